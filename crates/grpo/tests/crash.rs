//! SIGKILL while a checkpoint is being written: the previous checkpoint must
//! stay loadable. The test binary re-invokes itself as the child process
//! (env `VLRL_GRPO_CRASH_DIR`), which writes large checkpoints in a loop;
//! the parent kills it while a temporary checkpoint folder exists.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vlrl_grpo::checkpoint::CheckpointManager;

const ENV: &str = "VLRL_GRPO_CRASH_DIR";
const BLOB: usize = 8 << 20;

fn blob(step: u64) -> Vec<u8> {
    (0..BLOB)
        .map(|i| (i as u64 ^ step.wrapping_mul(0x9E37)) as u8)
        .collect()
}

/// The child: no-op unless re-invoked by `sigkill_during_checkpoint_...`.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(ENV) else {
        return;
    };
    let m = CheckpointManager::new(&dir, 3).unwrap();
    for step in 1.. {
        let state = format!("{{\"step\": {step}}}");
        m.save(
            step,
            &[("model.bin", &blob(step)), ("state.json", state.as_bytes())],
        )
        .unwrap();
    }
}

fn has_tmp(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        })
        .unwrap_or(false)
}

#[test]
fn sigkill_during_checkpoint_keeps_the_previous_one_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m = CheckpointManager::new(dir.path(), 3).unwrap();
    let start = Instant::now();
    // Wait for two complete checkpoints, then for a write in progress.
    let mut killed_mid_write = false;
    while start.elapsed() < Duration::from_secs(60) {
        if m.steps().unwrap_or_default().len() >= 2 && has_tmp(dir.path()) {
            child.kill().unwrap(); // SIGKILL on Unix
            killed_mid_write = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if !killed_mid_write {
        let _ = child.kill();
    }
    child.wait().unwrap();
    assert!(killed_mid_write, "never caught the child mid-write");
    assert!(
        has_tmp(dir.path()),
        "the interrupted write left its temp folder"
    );

    // Re-opening cleans the temp folder; the newest complete checkpoint loads
    // and verifies.
    let m = CheckpointManager::new(dir.path(), 3).unwrap();
    assert!(!has_tmp(dir.path()));
    let latest = m.latest().unwrap().expect("a checkpoint survives");
    assert!(latest.step >= 2);
    assert_eq!(
        latest.file("model.bin").unwrap(),
        blob(latest.step).as_slice()
    );
    let state = String::from_utf8(latest.file("state.json").unwrap().to_vec()).unwrap();
    assert_eq!(state, format!("{{\"step\": {}}}", latest.step));
}
