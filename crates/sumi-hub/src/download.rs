//! Downloads model repos and tokenizers from the Hugging Face hub into the hub cache layout
//! (`models--org--name/{blobs/<etag>, snapshots/<commit>/<path> -> ../../blobs/<etag>, refs/<rev>}`),
//! so that diffusers and Sumi's own discovery find them. Interrupted files resume with HTTP
//! `Range` requests; LFS files are checked against their sha256 before they are put in place.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cache;

mod select;

use crate::{HubError, Result};
use select::tokenizer_files;
pub use select::{select_model_files, select_tokenizer_files, TOKENIZER_FILES};

/// The hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const MAX_REDIRECTS: usize = 5;

/// Picks the files to fetch out of a repo's file list, or says why none fit.
pub type FileSelector<'a> = dyn Fn(&[String]) -> std::result::Result<Vec<String>, String> + 'a;

/// Progress of a pull, reported to the caller's callback.
#[derive(Debug, Clone)]
pub enum PullEvent<'a> {
    /// The file list is known: `files` to fetch with `total` bytes; `cached` files were already here.
    Planned {
        files: usize,
        total: u64,
        cached: usize,
    },
    /// Bytes arrived: `file_done` of `file_total` for `path`, `done` of `total` over the whole pull.
    Bytes {
        path: &'a str,
        file_done: u64,
        file_total: u64,
        done: u64,
        total: u64,
    },
    /// `path` is complete, verified and linked into the snapshot.
    FileDone { path: &'a str },
}

/// A client for the hub's HTTP API that writes into a local hub cache folder.
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    cache: PathBuf,
    retries: u32,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
}

/// One file to fetch: where, under which blob name, how big.
struct Remote {
    path: String,
    url: String,
    etag: String,
    size: u64,
}

/// Why one download attempt failed: worth retrying (the connection broke) or not.
enum Attempt {
    Retry(String),
    Fatal(HubError),
}

enum HttpError {
    Ureq(Box<ureq::Error>),
    Redirect(String),
}

impl HubClient {
    /// A client for the hub at `endpoint` that writes into the hub cache folder `cache`.
    pub fn new(endpoint: &str, cache: &Path) -> Self {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(&format!("sumi/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            cache: cache.to_path_buf(),
            retries: 3,
            agent,
        }
    }

    /// A client set up from `HF_ENDPOINT`, `HF_TOKEN` and the cache folder (`HF_HUB_CACHE`, `HF_HOME`).
    pub fn from_env() -> Result<Self> {
        let cache = cache::cache_dir().ok_or_else(|| {
            HubError::download(
                "the Hugging Face cache",
                "no cache folder is known: set HF_HUB_CACHE (or HF_HOME)",
            )
        })?;
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        Ok(Self::new(&endpoint, &cache).with_token(token))
    }

    /// Sends `token` as a bearer token to the hub (never to other hosts it redirects to).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.map(|t| t.trim().to_string());
        self
    }

    /// How many times a broken transfer is resumed within one call before giving up (default 3).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The hub cache folder this client writes into.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The hub's base URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Fetches what Sumi needs of the diffusers repo `repo` at `revision` (branch, tag or
    /// commit); returns the snapshot folder.
    pub fn pull(
        &self,
        repo: &str,
        revision: &str,
        on: &mut dyn FnMut(PullEvent<'_>),
    ) -> Result<PathBuf> {
        self.pull_with(repo, revision, &select_model_files, on)
    }

    /// Fetches only the tokenizer files of `repo` in `folder` ("" for the repo root); returns
    /// the tokenizer folder inside the snapshot.
    pub fn pull_tokenizer(
        &self,
        repo: &str,
        folder: &str,
        on: &mut dyn FnMut(PullEvent<'_>),
    ) -> Result<PathBuf> {
        let select = |files: &[String]| {
            let picked = tokenizer_files(files, folder);
            if picked.is_empty() {
                Err(format!(
                    "the repo has no tokenizer files in {}",
                    if folder.is_empty() {
                        "its root"
                    } else {
                        folder
                    }
                ))
            } else {
                Ok(picked)
            }
        };
        let snap = self.pull_with(repo, "main", &select, on)?;
        Ok(if folder.is_empty() {
            snap
        } else {
            snap.join(folder)
        })
    }

    /// Fetches the files `select` picks from the repo's file list (an `Err` says why none fit);
    /// returns the snapshot folder.
    pub fn pull_with(
        &self,
        repo: &str,
        revision: &str,
        select: &FileSelector<'_>,
        on: &mut dyn FnMut(PullEvent<'_>),
    ) -> Result<PathBuf> {
        let what = format!("pulling {repo} from {}", self.endpoint);
        if !cache::looks_like_repo_id(repo) {
            return Err(HubError::download(
                what,
                "not a repo id: write it as org/name, as on the model's page",
            ));
        }
        check_revision(revision).map_err(|r| HubError::download(&what, r))?;
        let info = self.repo_info(repo, revision)?;
        if !is_safe_name(&info.sha) {
            return Err(HubError::download(
                what,
                format!("the hub sent an unusable commit id {:?}", info.sha),
            ));
        }
        let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let files = select(&names).map_err(|r| HubError::download(&what, r))?;
        let base = self
            .cache
            .join(format!("models--{}", repo.replace('/', "--")));
        let snapshot = base.join("snapshots").join(&info.sha);
        let blobs = base.join("blobs");

        let mut todo = Vec::new();
        let mut cached = 0;
        for path in files {
            check_rel_path(&path).map_err(|r| HubError::download(&what, r))?;
            if snapshot.join(&path).is_file() {
                cached += 1;
                continue;
            }
            let remote = self.head(repo, &info.sha, &path)?;
            if blobs.join(&remote.etag).is_file() {
                link(&snapshot, &remote.path, &remote.etag)?;
                cached += 1;
                continue;
            }
            todo.push(remote);
        }
        let total: u64 = todo.iter().map(|r| r.size).sum();
        on(PullEvent::Planned {
            files: todo.len(),
            total,
            cached,
        });
        fs::create_dir_all(&blobs)?;
        let mut done = 0;
        for remote in &todo {
            self.fetch_blob(repo, remote, &blobs, &mut |file_done| {
                on(PullEvent::Bytes {
                    path: &remote.path,
                    file_done,
                    file_total: remote.size,
                    done: done + file_done,
                    total,
                })
            })?;
            done += remote.size;
            link(&snapshot, &remote.path, &remote.etag)?;
            on(PullEvent::FileDone { path: &remote.path });
        }
        fs::create_dir_all(&snapshot)?;
        if revision != info.sha {
            let r = base.join("refs").join(revision);
            if let Some(dir) = r.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(&r, &info.sha)?;
        }
        tracing::info!(repo, revision, commit = %info.sha, fetched = todo.len(), cached, "pulled");
        Ok(snapshot)
    }

    fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode(revision, false)
        );
        let what = format!(
            "looking up {repo} (revision {revision}) on {}",
            self.endpoint
        );
        let resp = self
            .request(None, "GET", &url, None)
            .map_err(|e| HubError::download(&what, self.explain(e, repo, revision)))?;
        serde_json::from_reader(resp.into_reader()).map_err(|e| {
            HubError::download(
                what,
                format!("the hub's answer is not the expected JSON ({e}); is HF_ENDPOINT a Hugging Face hub?"),
            )
        })
    }

    /// Asks for a file's blob name (etag) and size without downloading it.
    fn head(&self, repo: &str, sha: &str, path: &str) -> Result<Remote> {
        let url = format!(
            "{}/{repo}/resolve/{sha}/{}",
            self.endpoint,
            encode(path, true)
        );
        let what = format!("looking up {repo}/{path}");
        let resp = self
            .request(Some("X-Linked-Etag"), "HEAD", &url, None)
            .map_err(|e| HubError::download(&what, self.explain(e, repo, sha)))?;
        let etag = resp
            .header("X-Linked-Etag")
            .or_else(|| resp.header("ETag"))
            .map(clean_etag)
            .unwrap_or_default();
        if !is_safe_name(&etag) {
            return Err(HubError::download(
                what,
                format!(
                    "the hub sent no usable ETag ({etag:?}); is HF_ENDPOINT a Hugging Face hub?"
                ),
            ));
        }
        let size = resp
            .header("X-Linked-Size")
            .or_else(|| resp.header("Content-Length"))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Remote {
            path: path.to_string(),
            url,
            etag,
            size,
        })
    }

    /// Downloads one blob into `blobs/<etag>`: resumes `<etag>.incomplete`, retries broken
    /// transfers, checks the sha256 of LFS files, then moves it into place.
    fn fetch_blob(
        &self,
        repo: &str,
        remote: &Remote,
        blobs: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let blob = blobs.join(&remote.etag);
        let part = blobs.join(format!("{}.incomplete", remote.etag));
        let what = format!("downloading {repo}/{}", remote.path);
        let mut attempt = 0;
        loop {
            match self.fetch_once(repo, remote, &part, progress) {
                Ok(()) => break,
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(reason)) if attempt < self.retries => {
                    attempt += 1;
                    tracing::warn!("{what}: {reason}; resuming (try {attempt} of {})", self.retries);
                    std::thread::sleep(Duration::from_millis(200 * attempt as u64));
                }
                Err(Attempt::Retry(reason)) => {
                    return Err(HubError::download(
                        what,
                        format!("{reason}. Run the same command again: the download resumes where it stopped"),
                    ))
                }
            }
        }
        if is_sha256(&remote.etag) {
            let actual = crate::hashes::sha256_file(&part)?;
            if actual != remote.etag {
                fs::remove_file(&part)?;
                return Err(HubError::Checksum {
                    file: format!("{repo}/{}", remote.path),
                    expected: remote.etag.clone(),
                    actual,
                });
            }
        }
        fs::rename(&part, &blob)?;
        Ok(())
    }

    fn fetch_once(
        &self,
        repo: &str,
        remote: &Remote,
        part: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> std::result::Result<(), Attempt> {
        let fatal = |e: std::io::Error| Attempt::Fatal(HubError::Io(e));
        let mut start = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if remote.size > 0 && start > remote.size {
            fs::remove_file(part).map_err(fatal)?;
            start = 0;
        }
        if remote.size > 0 && start == remote.size {
            return Ok(());
        }
        let range = (start > 0).then_some(start);
        let resp = match self.request(None, "GET", &remote.url, range) {
            Ok(r) => r,
            Err(HttpError::Ureq(e)) if matches!(*e, ureq::Error::Status(416, _)) => {
                fs::remove_file(part).map_err(fatal)?;
                return Err(Attempt::Retry("the server refused to resume".into()));
            }
            Err(e) => {
                let retry =
                    matches!(&e, HttpError::Ureq(u) if matches!(**u, ureq::Error::Transport(_)));
                let reason = self.explain(e, repo, "");
                return Err(if retry {
                    Attempt::Retry(reason)
                } else {
                    Attempt::Fatal(HubError::download(
                        format!("downloading {repo}/{}", remote.path),
                        reason,
                    ))
                });
            }
        };
        let resumed = resp.status() == 206;
        if resumed {
            let expected = format!("bytes {start}-");
            let ok = resp
                .header("Content-Range")
                .is_some_and(|c| c.trim().starts_with(&expected));
            if !ok {
                fs::remove_file(part).map_err(fatal)?;
                return Err(Attempt::Retry(
                    "the server sent a different byte range".into(),
                ));
            }
        } else if start > 0 {
            tracing::info!(
                file = %remote.path,
                "the server ignored the range request; downloading from the start"
            );
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(part)
            .map_err(fatal)?;
        let mut done = if resumed { start } else { 0 };
        progress(done);
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    file.sync_all().map_err(fatal)?;
                    return Err(Attempt::Retry(format!(
                        "the connection broke after {done} of {} bytes ({e})",
                        remote.size
                    )));
                }
            };
            file.write_all(&buf[..n]).map_err(fatal)?;
            done += n as u64;
            progress(done);
        }
        file.sync_all().map_err(fatal)?;
        if remote.size > 0 && done < remote.size {
            return Err(Attempt::Retry(format!(
                "the connection closed after {done} of {} bytes",
                remote.size
            )));
        }
        if remote.size > 0 && done > remote.size {
            drop(file);
            fs::remove_file(part).map_err(fatal)?;
            return Err(Attempt::Fatal(HubError::download(
                format!("downloading {repo}/{}", remote.path),
                format!(
                    "the server sent {done} bytes, {} were announced; run the same command again",
                    remote.size
                ),
            )));
        }
        Ok(())
    }

    /// Sends a request and follows redirects by hand, so that the token goes only to the hub
    /// itself. Stops early at a redirect that carries the header `stop_at` (the hub's metadata).
    fn request(
        &self,
        stop_at: Option<&str>,
        method: &str,
        url: &str,
        range: Option<u64>,
    ) -> std::result::Result<ureq::Response, HttpError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.request(method, &url);
            if let Some(start) = range {
                req = req.set("Range", &format!("bytes={start}-"));
            }
            if let Some(token) = self.token.as_deref().filter(|_| self.same_origin(&url)) {
                req = req.set("Authorization", &format!("Bearer {token}"));
            }
            let resp = req.call().map_err(|e| HttpError::Ureq(Box::new(e)))?;
            if !(300..400).contains(&resp.status())
                || stop_at.is_some_and(|h| resp.header(h).is_some())
            {
                return Ok(resp);
            }
            let location = resp.header("Location").ok_or_else(|| {
                HttpError::Redirect(format!("redirect {} without a Location", resp.status()))
            })?;
            let next = url::Url::parse(&url)
                .and_then(|u| u.join(location))
                .map_err(|e| HttpError::Redirect(format!("bad redirect {location:?}: {e}")))?;
            url = next.to_string();
        }
        Err(HttpError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    fn same_origin(&self, url: &str) -> bool {
        match (url::Url::parse(url), url::Url::parse(&self.endpoint)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    /// Says what a failed request means for the user and what to do about it.
    fn explain(&self, e: HttpError, repo: &str, revision: &str) -> String {
        let e = match e {
            HttpError::Redirect(r) => return format!("the hub answered with a {r}"),
            HttpError::Ureq(e) => *e,
        };
        let ep = &self.endpoint;
        let token_hint = if self.token.is_some() {
            "HF_TOKEN is set; check that it is valid and has read access"
        } else {
            "if it is private or gated, set HF_TOKEN to a read token from {ep}/settings/tokens"
        }
        .replace("{ep}", ep);
        match e {
            ureq::Error::Status(code, resp) => {
                let kind = resp.header("X-Error-Code").unwrap_or("").to_string();
                match (code, kind.as_str()) {
                    (_, "GatedRepo") | (403, _) => format!(
                        "{repo} is gated: open {ep}/{repo}, accept its terms with your account, \
                         then set HF_TOKEN to a read token from {ep}/settings/tokens"
                    ),
                    (_, "RevisionNotFound") => format!(
                        "revision {revision:?} does not exist in {repo}: pass a branch, tag or commit that exists with --revision"
                    ),
                    (_, "EntryNotFound") => {
                        "the file is listed in the repo but the hub does not have it; try again later".to_string()
                    }
                    (401 | 404, _) => format!(
                        "repo {repo} was not found on {ep} ({code}): check the id (org/name, as on the model's page); {token_hint}"
                    ),
                    (429, _) => "the hub is limiting requests (429): wait a minute and run again (HF_TOKEN raises the limit)".to_string(),
                    (500.., _) => format!("the hub had a server error ({code}); try again later"),
                    _ => format!("the hub answered HTTP {code}"),
                }
            }
            ureq::Error::Transport(t) => {
                let detail = t.to_string();
                match t.kind() {
                    ureq::ErrorKind::Dns => format!(
                        "cannot look up the host of {ep}: this computer seems to be offline ({detail}). \
                         Connect to the internet and run again, or set HF_ENDPOINT to a reachable mirror; \
                         models already downloaded work offline"
                    ),
                    ureq::ErrorKind::ConnectionFailed => format!(
                        "cannot connect to {ep} ({detail}): check the internet connection, proxy or firewall, \
                         or set HF_ENDPOINT to a reachable mirror; models already downloaded work offline"
                    ),
                    _ => format!("the connection to {ep} failed ({detail})"),
                }
            }
        }
    }
}

/// Links `snapshot/path` to `../../blobs/<etag>` (a relative symlink, as the hub cache does).
fn link(snapshot: &Path, path: &str, etag: &str) -> Result<()> {
    let pointer = snapshot.join(path);
    if let Some(dir) = pointer.parent() {
        fs::create_dir_all(dir)?;
    }
    if fs::symlink_metadata(&pointer).is_ok() {
        fs::remove_file(&pointer)?;
    }
    let target = format!("{}blobs/{etag}", "../".repeat(path.split('/').count() + 1));
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &pointer)?;
    #[cfg(not(unix))]
    {
        // Windows needs developer mode for symlinks; a copy of the blob works everywhere.
        let blob = snapshot.join(target.replace('/', "\\"));
        #[cfg(windows)]
        let linked = std::os::windows::fs::symlink_file(&blob, &pointer).is_ok();
        #[cfg(not(windows))]
        let linked = false;
        if !linked {
            fs::copy(&blob, &pointer)?;
        }
    }
    Ok(())
}

fn clean_etag(raw: &str) -> String {
    raw.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A single path component we are willing to use as a file name (commit ids, etags).
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_revision(rev: &str) -> std::result::Result<(), String> {
    if rev.split('/').all(is_safe_name) {
        Ok(())
    } else {
        Err(format!(
            "revision {rev:?} is not a branch, tag or commit name"
        ))
    }
}

fn check_rel_path(path: &str) -> std::result::Result<(), String> {
    let ok = path
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
    if ok {
        Ok(())
    } else {
        Err(format!("the repo lists an unsafe file name {path:?}"))
    }
}

/// Percent-encodes a URL path piece (keeping `/` when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
