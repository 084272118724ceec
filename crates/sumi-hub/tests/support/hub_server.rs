//! A small HTTP/1.1 server on 127.0.0.1 for download tests. It serves made-up repos with the
//! Hugging Face hub's URL layout and headers (API, `resolve/` with `X-Repo-Commit`, `ETag`,
//! `X-Linked-Etag`, `X-Linked-Size`, redirects of LFS files to a second "CDN" origin that answers
//! `Range` requests) and misbehaves on request. It stops when dropped, or after two minutes.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A repo: its commit id and files (path, content). `.safetensors` files are served as LFS files.
pub struct Repo {
    pub sha: String,
    pub files: Vec<(String, Vec<u8>)>,
}

impl Repo {
    /// A repo holding every file under `dir`, with `sha` as its commit.
    pub fn from_dir(dir: &Path, sha: &str) -> Self {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        Repo {
            sha: sha.to_string(),
            files,
        }
    }

    /// Adds (or replaces) a file.
    pub fn put(&mut self, path: &str, data: Vec<u8>) {
        self.files.retain(|(p, _)| p != path);
        self.files.push((path.to_string(), data));
    }

    fn get(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, d)| d.as_slice())
    }
}

/// Misbehaviour to put on, changeable while the server runs.
#[derive(Default)]
pub struct Faults {
    /// Close the connection once, at this byte offset, while sending the file with this path.
    pub drop_once: Option<(String, usize)>,
    /// Serve the files with these paths with one byte changed.
    pub corrupt: Vec<String>,
    /// Answer range requests with the whole file (status 200), as some servers do.
    pub ignore_range: bool,
    /// Repos that answer 403 GatedRepo.
    pub gated: Vec<String>,
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Logged {
    /// "hub" or "cdn".
    pub server: &'static str,
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

struct State {
    repos: HashMap<String, Repo>,
    faults: Faults,
    log: Vec<Logged>,
    cdn: String,
}

/// The running server; `url` is the hub's base URL (use it as `HF_ENDPOINT`).
pub struct HubServer {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The sha256 of `data` as lowercase hex (the etag of an LFS file).
pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn is_lfs(path: &str) -> bool {
    path.ends_with(".safetensors") || path.ends_with(".bin") || path.ends_with(".ckpt")
}

impl HubServer {
    /// Starts serving `repos` (repo id, repo).
    pub fn start(repos: Vec<(&str, Repo)>) -> Self {
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", hub.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            repos: repos
                .into_iter()
                .map(|(id, r)| (id.to_string(), r))
                .collect(),
            faults: Faults::default(),
            log: Vec::new(),
            cdn: format!("http://{}", cdn.local_addr().unwrap()),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [(hub, "hub"), (cdn, "cdn")]
            .into_iter()
            .map(|(listener, name)| {
                let (state, stop) = (state.clone(), stop.clone());
                std::thread::spawn(move || serve(listener, name, &state, &stop))
            })
            .collect();
        HubServer {
            url,
            state,
            stop,
            threads,
        }
    }

    /// Changes the faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.lock().unwrap().faults);
    }

    /// The requests seen so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, name: &'static str, state: &Mutex<State>, stop: &AtomicBool) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let _ = handle(stream, name, state);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close after this many body bytes.
    cut: Option<usize>,
}

impl Reply {
    fn error(status: u16, code: &str) -> Self {
        Reply {
            status,
            headers: vec![("X-Error-Code".into(), code.into())],
            body: format!("{{\"error\":\"{code}\"}}").into_bytes(),
            cut: None,
        }
    }
}

fn handle(mut stream: TcpStream, name: &'static str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let path = percent_decode(&target);
    let mut st = state.lock().unwrap();
    st.log.push(Logged {
        server: name,
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    });
    let reply = if name == "hub" {
        hub_reply(&mut st, &path)
    } else {
        cdn_reply(&mut st, &path, headers.get("range"))
    };
    drop(st);
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nConnection: close\r\nContent-Length: {}\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = reply.cut.unwrap_or(reply.body.len()).min(reply.body.len());
        stream.write_all(&reply.body[..end])?;
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn hub_reply(st: &mut State, path: &str) -> Reply {
    let p = path.trim_start_matches('/');
    let (api, rest) = match p.strip_prefix("api/models/") {
        Some(r) => (true, r),
        None => (false, p),
    };
    let mut it = rest.splitn(3, '/');
    let repo_id = format!("{}/{}", it.next().unwrap_or(""), it.next().unwrap_or(""));
    let tail = it.next().unwrap_or("");
    if st.faults.gated.contains(&repo_id) {
        return Reply::error(403, "GatedRepo");
    }
    let Some(repo) = st.repos.get(&repo_id) else {
        return Reply::error(404, "RepoNotFound");
    };
    let known_rev = |r: &str| r == "main" || r == repo.sha;
    if api {
        let rev = tail.strip_prefix("revision/").unwrap_or("");
        if !known_rev(rev) {
            return Reply::error(404, "RevisionNotFound");
        }
        let siblings: Vec<_> = repo
            .files
            .iter()
            .map(|(p, _)| serde_json::json!({ "rfilename": p }))
            .collect();
        let body = serde_json::json!({ "id": repo_id, "sha": repo.sha, "siblings": siblings });
        return Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            cut: None,
        };
    }
    let Some((rev, file)) = tail
        .strip_prefix("resolve/")
        .and_then(|t| t.split_once('/'))
    else {
        return Reply::error(404, "EntryNotFound");
    };
    if !known_rev(rev) {
        return Reply::error(404, "RevisionNotFound");
    }
    let Some(data) = repo.get(file) else {
        return Reply::error(404, "EntryNotFound");
    };
    let commit = ("X-Repo-Commit".to_string(), repo.sha.clone());
    if is_lfs(file) {
        let sha = sha256_hex(data);
        Reply {
            status: 302,
            headers: vec![
                commit,
                (
                    "ETag".into(),
                    "\"0123456789abcdef0123456789abcdef01234567\"".into(),
                ),
                ("X-Linked-Etag".into(), format!("\"{sha}\"")),
                ("X-Linked-Size".into(), data.len().to_string()),
                (
                    "Location".into(),
                    format!("{}/lfs/{repo_id}/{file}", st.cdn),
                ),
            ],
            body: Vec::new(),
            cut: None,
        }
    } else {
        let etag = sha256_hex(data)[..40].to_string();
        Reply {
            status: 200,
            headers: vec![commit, ("ETag".into(), format!("\"{etag}\""))],
            body: data.to_vec(),
            cut: None,
        }
    }
}

fn cdn_reply(st: &mut State, path: &str, range: Option<&String>) -> Reply {
    let p = path.trim_start_matches('/').trim_start_matches("lfs/");
    let mut it = p.splitn(3, '/');
    let repo_id = format!("{}/{}", it.next().unwrap_or(""), it.next().unwrap_or(""));
    let file = it.next().unwrap_or("").to_string();
    let Some(mut data) = st
        .repos
        .get(&repo_id)
        .and_then(|r| r.get(&file))
        .map(|d| d.to_vec())
    else {
        return Reply::error(404, "NoSuchKey");
    };
    if st.faults.corrupt.contains(&file) {
        let mid = data.len() / 2;
        data[mid] ^= 0x55;
    }
    let len = data.len();
    let start = range
        .filter(|_| !st.faults.ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let cut_at = match &st.faults.drop_once {
        Some((f, at)) if *f == file => {
            let at = *at;
            st.faults.drop_once = None;
            Some(at)
        }
        _ => None,
    };
    match start {
        Some(s) if s >= len => Reply::error(416, "InvalidRange"),
        Some(s) => Reply {
            status: 206,
            headers: vec![(
                "Content-Range".into(),
                format!("bytes {s}-{}/{len}", len - 1),
            )],
            body: data[s..].to_vec(),
            cut: cut_at.map(|c| c.saturating_sub(s)),
        },
        None => Reply {
            status: 200,
            headers: Vec::new(),
            body: data,
            cut: cut_at,
        },
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
