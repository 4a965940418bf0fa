//! Intents: a file per create or delete in progress, under `<state_dir>/journal/`, so that a
//! weftd killed half-way knows at its next start which instances were being created (they are
//! rolled back: their create never answered) or deleted (the delete is finished). A create's
//! intent is written before its store rows and removed after its last step; a delete's is
//! written once the delete is accepted and removed with the rows.

use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Create,
    Delete,
}

impl Intent {
    fn suffix(self) -> &'static str {
        match self {
            Intent::Create => "create",
            Intent::Delete => "delete",
        }
    }
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(state_dir: &Path) -> std::io::Result<Journal> {
        let dir = state_dir.join("journal");
        std::fs::create_dir_all(&dir)?;
        Ok(Journal { dir })
    }

    fn path(&self, uuid: &str, intent: Intent) -> PathBuf {
        self.dir.join(format!("{uuid}.{}", intent.suffix()))
    }

    /// Records the intent durably (the file and its directory entry are synced).
    pub fn begin(&self, uuid: &str, intent: Intent) -> std::io::Result<()> {
        let file = std::fs::File::create(self.path(uuid, intent))?;
        file.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Forgets the intent; one that is not there is fine.
    pub fn end(&self, uuid: &str, intent: Intent) {
        match std::fs::remove_file(self.path(uuid, intent)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(uuid, error = %e, "removing an intent"),
        }
    }

    /// Every intent left, as (uuid, intent).
    pub fn pending(&self) -> Vec<(String, Intent)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<_> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (uuid, kind) = name.rsplit_once('.')?;
                let intent = match kind {
                    "create" => Intent::Create,
                    "delete" => Intent::Delete,
                    _ => return None,
                };
                Some((uuid.to_string(), intent))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip() {
        let dir = tempfile_dir();
        let journal = Journal::open(&dir).unwrap();
        journal.begin("a", Intent::Create).unwrap();
        journal.begin("b", Intent::Delete).unwrap();
        assert_eq!(
            journal.pending(),
            [
                ("a".to_string(), Intent::Create),
                ("b".to_string(), Intent::Delete)
            ]
        );
        journal.end("a", Intent::Create);
        journal.end("a", Intent::Create);
        assert_eq!(journal.pending().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
