//! weft's HTTP API, compatible with Unikraft Cloud's instance API
