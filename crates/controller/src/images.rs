//! Images: a kernel, an optional initrd and optional default args in `<images_dir>/<name>/`
//! (`kernel`, `initrd`, and `image.toml` with `default_args = [...]`).

use std::path::{Path, PathBuf};

use crate::error::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The app's args when an instance gives none.
    pub default_args: Vec<String>,
    /// The least memory the image boots with.
    pub min_memory_mb: Option<u32>,
}

#[derive(serde::Deserialize)]
struct ImageToml {
    #[serde(default)]
    default_args: Vec<String>,
    min_memory_mb: Option<u32>,
}

/// Finds an image by the name the API was given: `base`, `base:latest`, `team/app:v2`. The
/// tag `latest` is the image's own directory; another tag `t` is `<name>@t`.
/// With `needs_kernel` false (drivers that boot no kernel), a directory is enough.
pub fn resolve(images_dir: &Path, reference: &str, needs_kernel: bool) -> Result<Image, Error> {
    let bad = || {
        Error::bad_request(format!(
            "Invalid image '{reference}': expected a name such as 'base' or 'base:latest' \
             (letters, digits, '.', '_', '-', segments separated by '/')"
        ))
    };
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (reference, None),
    };
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if reference.len() > 255 || !name.split('/').all(segment_ok) || !tag.is_none_or(segment_ok) {
        return Err(bad());
    }

    let dir = match tag {
        None | Some("latest") => images_dir.join(name),
        Some(tag) => images_dir.join(format!("{name}@{tag}")),
    };
    let kernel = dir.join("kernel");
    let found = if needs_kernel {
        kernel.is_file()
    } else {
        dir.is_dir()
    };
    if !found {
        return Err(Error::not_found(format!("image '{reference}' not found")));
    }
    let initrd = dir.join("initrd");
    let parsed: ImageToml = match std::fs::read_to_string(dir.join("image.toml")) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            Error::internal(format!("image '{reference}' has a bad image.toml: {e}"))
        })?,
        Err(_) => ImageToml {
            default_args: Vec::new(),
            min_memory_mb: None,
        },
    };
    Ok(Image {
        kernel,
        initrd: initrd.is_file().then_some(initrd),
        default_args: parsed.default_args,
        min_memory_mb: parsed.min_memory_mb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_refuses() {
        let dir = std::env::temp_dir().join(format!("weft-images-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("base")).unwrap();
        std::fs::write(dir.join("base/kernel"), b"k").unwrap();

        let image = resolve(&dir, "base:latest", true).unwrap();
        let expected = Image {
            kernel: dir.join("base/kernel"),
            initrd: None,
            default_args: vec![],
            min_memory_mb: None,
        };
        assert_eq!(image, expected);
        assert_eq!(resolve(&dir, "base", true).unwrap(), expected);
        std::fs::write(
            dir.join("base/image.toml"),
            "default_args = [\"/bin/app\", \"-v\"]\nmin_memory_mb = 96\n",
        )
        .unwrap();
        assert_eq!(
            resolve(&dir, "base", true).unwrap().default_args,
            ["/bin/app", "-v"]
        );
        assert_eq!(resolve(&dir, "base", true).unwrap().min_memory_mb, Some(96));
        assert_eq!(
            resolve(&dir, "nope", true).unwrap_err().code,
            crate::Code::NotFound
        );
        assert_eq!(
            resolve(&dir, "base:v2", true).unwrap_err().code,
            crate::Code::NotFound
        );
        for bad in ["../etc", "base/..", "/abs", "a b", "base:", "", "a:b:c"] {
            assert_eq!(
                resolve(&dir, bad, true).unwrap_err().code,
                crate::Code::BadRequest,
                "{bad}"
            );
        }
        std::fs::create_dir_all(dir.join("bare")).unwrap();
        assert_eq!(
            resolve(&dir, "bare", true).unwrap_err().code,
            crate::Code::NotFound
        );
        assert!(resolve(&dir, "bare", false).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
