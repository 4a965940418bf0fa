//! weft's store: instances and interfaces in SQLite, the source of truth
