//! Serves the control socket inside observerd: a tokio task beside the
//! reader and the writer. Each connection runs in its own task with a
//! deadline, so a slow or stuck client holds one of `max_connections`
//! slots and nothing else; capture never waits for it.
use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{oneshot, watch, Semaphore},
};

use super::{
    config::ControlSection,
    peer,
    protocol::{error, ok, PROTOCOL_VERSION},
    state::State,
};
use crate::{
    pipeline::inbox::{Ask, Msg, RotateRequest},
    receipt::rotation,
};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control.socket {0}: another observerd serves it (connect succeeded)")]
    InUse(PathBuf),
    #[error("control.socket {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("control.socket: {0}")]
    Untrusted(#[from] crate::trust::TrustError),
}

/// The longest `reason` a rotation records.
pub const MAX_REASON_CHARS: usize = 1024;

/// `keys_rotate`: a new random seed goes to `<seed>.next`, the writer
/// thread issues the rotation receipt (signed by the old master), and once
/// it is committed `.next` replaces the seed file. Runs in its own task so
/// that a client that gives up does not cut it short between commit and
/// rename.
async fn rotate(state: &State, reason: Option<String>) -> Value {
    let Some(seed_path) = state.master_seed.clone() else {
        return error(
            "unavailable",
            "receipts are disabled: there is no master key to rotate",
        );
    };
    let Some(writer) = state.writer.lock().ok().and_then(|w| w.clone()) else {
        return error("unavailable", "the daemon is shutting down");
    };
    let lock = state.rotating.clone();
    let task = tokio::spawn(async move {
        let _one = lock.lock().await;
        let path = seed_path.clone();
        let seed = match tokio::task::spawn_blocking(move || rotation::write_next(&path)).await {
            Ok(Ok(seed)) => seed,
            Ok(Err(e)) => return error("failed", &format!("new master seed: {e}")),
            Err(e) => return error("failed", &format!("new master seed: {e}")),
        };
        let discard = |why: String| {
            let next = rotation::next_path(&seed_path);
            let _ = std::fs::remove_file(&next);
            error("failed", &why)
        };
        let (reply, answer) = oneshot::channel();
        let request = RotateRequest {
            seed,
            reason,
            reply,
        };
        if writer.send(Msg::Rotate(request)).await.is_err() {
            return discard("the event writer has stopped".into());
        }
        let (placed, committed) = match answer.await {
            Ok(Ok(placed)) => placed,
            Ok(Err(e)) => return discard(e),
            Err(_) => return discard("the event writer has stopped".into()),
        };
        let Ok(receipt_hash) = committed.await else {
            // Issued but not known to be committed: the next start looks
            // in the store and finishes or discards the rotation.
            return error(
                "failed",
                "the rotation receipt was not committed (the receipt writer stopped); the next daemon start completes or discards the rotation",
            );
        };
        let path = seed_path.clone();
        match tokio::task::spawn_blocking(move || rotation::commit_next(&path)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("master key rotation committed, but {e}; the next start finishes it");
                return error("failed", &format!("replacing the seed file: {e}"));
            }
            Err(e) => return error("failed", &format!("replacing the seed file: {e}")),
        }
        log::warn!(
            "master key rotated to generation {} ({}); {} replaced",
            placed.generation,
            placed.new_kid,
            seed_path.display()
        );
        ok(serde_json::json!({
            "old_master_kid": placed.old_kid,
            "new_master_kid": placed.new_kid,
            "generation": placed.generation,
            "leaf_index": placed.leaf_index,
            "receipt_hash": hex::encode(receipt_hash),
        }))
    });
    task.await
        .unwrap_or_else(|e| error("failed", &format!("the rotation task failed: {e}")))
}

/// A bound socket and the group it serves.
pub struct Bound {
    listener: UnixListener,
    path: PathBuf,
    /// (name, gid) of the socket's group; None: root only.
    group: Option<(String, u32)>,
}

/// Binds the socket: root:<group> 0660, or root 0600 without the group.
/// The socket is bound under a temporary name, given its owner and mode,
/// then renamed into place, so it is never reachable with looser ones. A
/// stale socket (nobody accepts on it) is replaced.
pub fn bind(section: &ControlSection) -> Result<Bound, ControlError> {
    let path = section.socket.clone();
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| ControlError::Io {
            path: path.clone(),
            what,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).map_err(io("creating its directory"))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io("setting its directory's mode"))?;
    }
    // The socket's directory and those above it must be root's and closed
    // to others: the names in it (the socket, its temporary name) are then
    // ours alone, and renaming by name cannot be redirected.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::trust::TrustedDir::open(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(ControlError::InUse(path));
        }
        std::fs::remove_file(&path).map_err(io("removing the stale socket"))?;
    }
    let group = match nix::unistd::Group::from_name(&section.group) {
        Ok(Some(g)) => Some((section.group.clone(), g.gid.as_raw())),
        _ => None,
    };
    let tmp = temporary_name(&path);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io("binding"))?;
    // Owner and mode are set on the node just bound, held by an O_PATH
    // descriptor opened without following links, not by name.
    let node = match socket_node(&tmp) {
        Ok(node) => node,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("opening the bound socket")(e));
        }
    };
    // Without CAP_CHOWN the group cannot be given: root-only then.
    let group = group.filter(|(name, gid)| {
        chown_node(&node, *gid)
            .map_err(|e| {
                log::warn!(
                    "control socket {}: cannot give it group {name}: {e}",
                    path.display()
                );
            })
            .is_ok()
    });
    let secure = || -> std::io::Result<()> {
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        chmod_node(&node, mode)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = secure() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("setting its owner and mode")(e));
    }
    match &group {
        Some((name, gid)) => log::info!(
            "control socket {} (root:{name} gid {gid}, 0660)",
            path.display()
        ),
        None => log::warn!(
            "control socket {}: root-only (0600): group {:?} does not exist or cannot be given",
            path.display(),
            section.group
        ),
    }
    Ok(Bound {
        listener,
        path,
        group,
    })
}

/// The socket file at `path` as an O_PATH descriptor, refused unless it
/// is a socket (a link or anything else planted there is not ours).
fn socket_node(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let flags =
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC;
    let raw = nix::fcntl::openat(None, path, flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: just opened, owned by nobody else.
    let node = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    let stat = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&node))?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(std::io::Error::other("not the socket just bound"));
    }
    Ok(node)
}

/// root:`gid` on the node itself (`fchownat` with `AT_EMPTY_PATH`).
fn chown_node(node: &std::os::fd::OwnedFd, gid: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and a NUL-terminated empty path.
    let rc = unsafe { libc::fchownat(node.as_raw_fd(), c"".as_ptr(), 0, gid, libc::AT_EMPTY_PATH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The mode of the node itself: chmod through /proc/self/fd reaches the
/// inode the O_PATH descriptor holds, whatever its name now points to.
fn chmod_node(node: &std::os::fd::OwnedFd, mode: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let magic = format!("/proc/self/fd/{}", node.as_raw_fd());
    std::fs::set_permissions(magic, std::fs::Permissions::from_mode(mode))
}

/// `.<name>.<pid>` beside `path`, if that still fits in sun_path; else a
/// short name in the same directory.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let long = path.with_file_name(format!(".{name}.{}", std::process::id()));
    if long.as_os_str().len() <= 107 {
        long
    } else {
        path.with_file_name(format!(".c{}", std::process::id()))
    }
}

/// Serves until `stop`, then removes the socket.
pub async fn serve(
    bound: Bound,
    state: Arc<State>,
    section: ControlSection,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(section.max_connections));
    let section = Arc::new(section);
    let group = Arc::new(bound.group.clone());
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stream = tokio::select! {
            r = bound.listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    log::warn!("control socket: accept: {e}");
                    // EMFILE and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = sample.tick() => {
                take_sample(&state);
                continue;
            }
            _ = stop.changed() => break,
        };
        let timeout = Duration::from_millis(section.timeout_ms);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(
                stream,
                error(
                    "busy",
                    &format!(
                        "the daemon already serves {} control connections; try again",
                        section.max_connections
                    ),
                ),
                timeout,
            ));
            continue;
        };
        let (state, section, group) = (state.clone(), section.clone(), group.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, &state, &section, &group, stop).await;
        });
    }
    if let Ok(mut w) = state.writer.lock() {
        w.take();
    }
    let _ = std::fs::remove_file(&bound.path);
}

fn take_sample(state: &State) {
    let Some(total) = state.sources.counters.lock().ok().and_then(|g| {
        g.as_ref()
            .map(|s| s.kernel.values().map(|k| k.emitted).sum::<u64>())
    }) else {
        return;
    };
    if let Ok(mut samples) = state.samples.lock() {
        samples.push_back((Instant::now(), total));
        while samples.len() > 11 {
            samples.pop_front();
        }
    }
}

async fn refuse(mut stream: UnixStream, answer: Value, timeout: Duration) {
    let line = format!("{answer}\n");
    let _ = tokio::time::timeout(timeout, async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One client. Requests and their answers must fit in `timeout_ms` from
/// connect; a streamed answer (`receipts`, `follow`) then runs without
/// that deadline, each of its writes bounded by `timeout_ms` instead.
async fn connection(
    stream: UnixStream,
    state: &State,
    section: &ControlSection,
    group: &Option<(String, u32)>,
    stop: watch::Receiver<bool>,
) {
    let timeout = Duration::from_millis(section.timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let peer = match stream.peer_cred() {
        Ok(c) => peer::Peer {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
            groups: {
                use std::os::fd::AsFd;
                peer::peer_groups(stream.as_fd())
            },
        },
        Err(e) => {
            log::warn!("control socket: SO_PEERCRED: {e}");
            return;
        }
    };
    if !peer::allowed(&peer, group.as_ref().map(|(_, gid)| *gid)) {
        log::warn!(
            message_id = crate::service::journal::message_id::CONTROL_REFUSED,
            peer_uid = peer.uid;
            "control socket: refused uid {} gid {} pid {:?}",
            peer.uid,
            peer.gid,
            peer.pid
        );
        let message = peer::refusal(&peer, group.as_ref().map(|(n, g)| (n.as_str(), *g)));
        let line = format!("{}\n", error("permission_denied", &message));
        let mut stream = stream;
        let _ = tokio::time::timeout_at(deadline, async {
            let _ = stream.write_all(line.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let max = section.max_request_bytes;
    loop {
        let mut line = Vec::new();
        let Ok(Ok(n)) = tokio::time::timeout_at(
            deadline,
            (&mut read)
                .take(max as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await
        else {
            return;
        };
        if n == 0 {
            return;
        }
        let too_long = line.len() > max && line.last() != Some(&b'\n');
        if !too_long {
            match streamed(&line) {
                Some((Stream::Receipts, req)) => {
                    super::query::serve_receipts(&req, &mut write, state, timeout).await;
                    let _ = write.shutdown().await;
                    return;
                }
                Some((Stream::Follow, req)) => {
                    super::follow::serve_follow(&req, read, &mut write, state, timeout, stop).await;
                    let _ = write.shutdown().await;
                    return;
                }
                None => {}
            }
        }
        let answer = if too_long {
            error(
                "request_too_large",
                &format!("a request is one line of at most {max} bytes"),
            )
        } else {
            match tokio::time::timeout_at(deadline, handle(state, &line, &peer)).await {
                Ok(answer) => answer,
                Err(_) => return,
            }
        };
        let text = format!("{answer}\n");
        let written = tokio::time::timeout_at(deadline, write.write_all(text.as_bytes())).await;
        if !matches!(written, Ok(Ok(()))) || too_long {
            let _ = tokio::time::timeout_at(deadline, write.shutdown()).await;
            return;
        }
    }
}

/// The requests answered with a stream of lines.
enum Stream {
    Receipts,
    Follow,
}

/// A well-formed request of this version for a streamed answer; anything
/// else goes to [`handle`], which answers it (or says what is wrong).
fn streamed(line: &[u8]) -> Option<(Stream, Value)> {
    let req: Value = serde_json::from_slice(line).ok()?;
    if req["v"].as_u64() != Some(PROTOCOL_VERSION) {
        return None;
    }
    let kind = match req["cmd"].as_str()? {
        "receipts" => Stream::Receipts,
        "follow" => Stream::Follow,
        _ => return None,
    };
    Some((kind, req))
}

/// One request: `{"v": 1, "cmd": "...", ...}`.
async fn handle(state: &State, line: &[u8], peer: &peer::Peer) -> Value {
    let req: Value = match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error("bad_request", "a request is one JSON object on one line"),
    };
    if req["v"].as_u64() != Some(PROTOCOL_VERSION) {
        return error(
            "unsupported_version",
            &format!(
                "this daemon speaks control protocol version {PROTOCOL_VERSION}; the request has \"v\": {}",
                req["v"]
            ),
        );
    }
    let ask_timeout = Duration::from_secs(2);
    match req["cmd"].as_str() {
        Some("ping") => ok(serde_json::json!({"pid": std::process::id()})),
        Some("status") => ok(super::status::status(state, ask_timeout).await),
        Some("policy") => match state.ask(Ask::Policy, ask_timeout).await {
            Ok(Ok(v)) => ok(v),
            Ok(Err(e)) | Err(e) => error("unavailable", &e),
        },
        Some("process_tree") => {
            let Some(pid) = req["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
                return error("bad_request", "process_tree needs \"pid\": a process id");
            };
            match state.ask(Ask::ProcessTree { pid }, ask_timeout).await {
                Ok(Ok(v)) => ok(v),
                Ok(Err(e)) => error("not_found", &e),
                Err(e) => error("unavailable", &e),
            }
        }
        Some("keys_rotate") => {
            // Rotation writes (a receipt, the seed file): root only, even
            // for members of the socket's group.
            if peer.uid != 0 {
                log::warn!(
                    "control socket: keys_rotate refused for uid {} pid {:?}",
                    peer.uid,
                    peer.pid
                );
                return error(
                    "permission_denied",
                    &format!(
                        "permission denied: uid {} is not root; only root may rotate the master key",
                        peer.uid
                    ),
                );
            }
            let reason = match &req["reason"] {
                Value::Null => None,
                Value::String(r) if r.chars().count() <= MAX_REASON_CHARS => Some(r.clone()),
                _ => {
                    return error(
                        "bad_request",
                        &format!(
                            "\"reason\" must be a string of at most {MAX_REASON_CHARS} characters"
                        ),
                    )
                }
            };
            rotate(state, reason).await
        }
        Some(other) => error(
            "unknown_command",
            &format!(
                "unknown command {other:?}: ping, status, policy, process_tree, keys_rotate, \
                 receipts, follow"
            ),
        ),
        None => error("bad_request", "a request needs \"cmd\""),
    }
}
