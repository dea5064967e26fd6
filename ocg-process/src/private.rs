//! Private files: everything OCG writes holds user data (chats, memories,
//! tokens), so it is readable by its owner only, whatever the umask.
//!
//! Every OCG program calls [`make_private`] first thing: it sets the process
//! umask to 077 (new files 0600, new directories 0700, also for the children
//! it starts) and tightens what an earlier version left readable under a
//! looser umask.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use ocg_core::Config;

/// Set the umask to 077 and make `config`'s data dir private: the directory
/// 0700, everything below it without group or other bits. The workspace
/// directory itself is made 0700 too, but what the user keeps inside it is
/// left as it is (nobody else can reach it through a 0700 directory).
/// Returns how many existing entries were tightened.
pub fn make_private(config: &Config) -> io::Result<usize> {
    private_umask();
    let workspace = config.raw().get("OCG_WORKSPACE").map_or_else(
        || config.data_dir.join("workspace"),
        |s| PathBuf::from(&s.value),
    );
    let changed = tighten(&config.data_dir, &[workspace])?;
    if changed > 0 {
        tracing::info!(
            changed,
            dir = %config.data_dir.display(),
            "made existing files private (0600) and directories 0700"
        );
    }
    Ok(changed)
}

/// Set the process umask to 077: what it (and every child it starts) creates
/// from now on is its owner's only.
pub fn private_umask() {
    umask(Mode::from_bits_truncate(0o077));
}

/// Create `root` (0700) if missing, then remove the group and other bits of
/// `root` and of everything below it, without following symlinks and without
/// descending into `keep_contents_of`. The number of entries changed.
pub fn tighten(root: &Path, keep_contents_of: &[PathBuf]) -> io::Result<usize> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    let mut changed = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = fs::symlink_metadata(&path)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & !0o077))?;
            changed += 1;
        }
        if metadata.is_dir() && !keep_contents_of.iter().any(|kept| kept == &path) {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_install_made_under_umask_022_is_tightened_but_the_workspace_contents_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let set = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        fs::create_dir_all(data.join("index")).unwrap();
        fs::create_dir_all(data.join("workspace/project")).unwrap();
        for file in [
            "ocg.db",
            "ocg.db-wal",
            "index/notes.faiss",
            "workspace/project/a.sh",
        ] {
            fs::write(data.join(file), b"x").unwrap();
            set(&data.join(file), 0o644);
        }
        set(&data.join("workspace/project/a.sh"), 0o755);
        for d in ["", "index", "workspace", "workspace/project"] {
            set(&data.join(d), 0o755);
        }
        let outside = dir.path().join("outside");
        fs::write(&outside, b"x").unwrap();
        set(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        let changed = tighten(&data, &[data.join("workspace")]).unwrap();
        assert_eq!(changed, 6);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("ocg.db")), 0o600);
        assert_eq!(mode(&data.join("ocg.db-wal")), 0o600);
        assert_eq!(mode(&data.join("index")), 0o700);
        assert_eq!(mode(&data.join("index/notes.faiss")), 0o600);
        assert_eq!(mode(&data.join("workspace")), 0o700);
        assert_eq!(mode(&data.join("workspace/project")), 0o755);
        assert_eq!(mode(&data.join("workspace/project/a.sh")), 0o755);
        assert_eq!(mode(&outside), 0o644, "symlinks are not followed");
        assert_eq!(tighten(&data, &[data.join("workspace")]).unwrap(), 0);

        let fresh = dir.path().join("fresh/data");
        tighten(&fresh, &[]).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
