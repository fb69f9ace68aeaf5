//! A credential given inline or as a file (`password` / `password_file`,
//! `credentials` / `credentials_file`, `bearer_token_file`), shared by
//! remote_write, scrapes and http_sd.
//!
//! Owns: reading the file at each use (a rotated secret needs no restart)
//! and trimming it as Prometheus does. Must never: read the file on the
//! async runtime (`get` goes through the blocking pool).

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    /// The inline value if given, else the file, else none.
    pub fn from(inline: &Option<String>, file: &Option<PathBuf>) -> Option<Secret> {
        match (inline, file) {
            (Some(s), _) => Some(Secret::Inline(s.clone())),
            (None, Some(f)) => Some(Secret::File(f.clone())),
            (None, None) => None,
        }
    }

    /// Blocking for `File`: on the runtime use `get`.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("{}: {e}", p.display())),
        }
    }

    /// The value; a file is read on the blocking pool.
    pub async fn get(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(_) => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.read())
                    .await
                    .map_err(|e| format!("reading a secret failed: {e}"))?
            }
        }
    }
}
