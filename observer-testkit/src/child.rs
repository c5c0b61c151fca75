//! Child processes a test starts: killed and reaped when the guard drops,
//! or stopped politely with [`terminate`].
use std::{
    process::Child,
    time::{Duration, Instant},
};

/// Kills and reaps a child when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM, then waits up to `grace` for the child to exit; SIGKILL (and
/// reaps it) if it has not. Returns whether it exited on its own.
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}
