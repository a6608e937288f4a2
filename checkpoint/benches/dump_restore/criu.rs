//! CRIU, run in the same benchmark on the same process: `$SSI_CRIU`, else `criu` on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A CRIU binary that answered `--version`.
pub struct Criu {
    bin: PathBuf,
    /// Its version line (`Version: 4.2`).
    pub version: String,
}

impl Criu {
    /// `$SSI_CRIU`, else the first `criu` on `PATH`; `None` when there is none, or when it
    /// does not run (then the tables say "not compared").
    pub fn find() -> Option<Criu> {
        let bin = match std::env::var_os("SSI_CRIU") {
            Some(p) => PathBuf::from(p),
            None => std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("criu"))
                .find(|p| p.is_file())?,
        };
        let out = Command::new(&bin).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.lines().find(|l| l.starts_with("Version"))?.to_string();
        Some(Criu { bin, version })
    }

    fn run(&self, args: &[&str], dir: &Path) -> f64 {
        let t = Instant::now();
        let out = Command::new(&self.bin)
            .args(args)
            .arg("-D")
            .arg(dir)
            .output()
            .expect("run criu");
        let took = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "criu {} -D {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    /// `criu dump -t PID --shell-job --leave-running` into `dir` (made afresh); seconds.
    pub fn dump(&self, pid: i32, dir: &Path) -> f64 {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("criu image dir");
        self.run(
            &[
                "dump",
                "-t",
                &pid.to_string(),
                "--shell-job",
                "--leave-running",
            ],
            dir,
        )
    }

    /// `criu restore --shell-job -d` from `dir`: seconds until the tree runs, detached.
    pub fn restore(&self, dir: &Path) -> f64 {
        self.run(&["restore", "--shell-job", "-d"], dir)
    }
}
