//! Durability and the page cache: fsync of a whole image, and dropping the caches for a cold
//! restore.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

/// fsyncs every file of `dir` and then `dir` itself; returns the seconds it took. This is what
/// makes an image survive a power cut: until then it may live in the page cache only.
pub fn fsync_dir(dir: &Path) -> f64 {
    let t = Instant::now();
    for e in std::fs::read_dir(dir).expect("read image dir") {
        let path = e.expect("dir entry").path();
        if path.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
        }
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("fsync {}: {e}", dir.display()));
    t.elapsed().as_secs_f64()
}

/// Reads every file of `dir`, so that a restore finds them in the page cache.
pub fn warm(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read image dir") {
        let path = e.expect("dir entry").path();
        if path.is_file() {
            let mut f = File::open(&path).expect("open image file");
            std::io::copy(&mut f, &mut std::io::sink()).expect("read image file");
        }
    }
}

/// Writes back everything dirty and drops the page cache (`sync; echo 3 >
/// /proc/sys/vm/drop_caches`), so that the next read comes from the disk.
pub fn drop_caches() {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("write /proc/sys/vm/drop_caches");
}
