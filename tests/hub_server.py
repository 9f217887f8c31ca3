"""A Hub-protocol HTTP server for tests: the routes that `huggingface_hub` and `datasets` call, over real HTTP.

Each commit is a full snapshot (path -> stored file), so every old revision stays readable; file contents
live in a folder, one file per sha256. Like the Hub, paths that the repo's `.gitattributes` marks
`filter=lfs` (`*.parquet`) go through the basic LFS transfer (batch, then PUT); the rest are regular git
blobs inside the commit. There is no xet: clients must run with `HF_HUB_DISABLE_XET=1`. Requests that
match no route are answered 404 and recorded in `HubServer.unhandled`.
"""

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
_REPO = r"(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", r"/api/(?P<kind>models|datasets|spaces)", "list_repos"),
    ("GET", rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("POST", rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("POST", rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET", r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("POST", r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs-upload/(?P<sha256>[0-9a-f]{64})", "lfs_upload"),
]
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
_FRONT_MATTER = re.compile(r"\A---\s*\n(?P<yaml>.*?)\n---\s*\n(?P<body>.*)\Z", re.DOTALL)
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


class HubError(Exception):
    """An HTTP error answer, with the Hub's `X-Error-Code` header and any more fields of its JSON body."""

    def __init__(self, status: int, code: str, message: str, **fields: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.fields = fields


@dataclass(frozen=True)
class StoredFile:
    """A file of a commit: its git object id, the sha256 naming its content in storage, its size, LFS or not."""

    oid: str
    sha256: str
    size: int
    lfs: bool

    @property
    def etag(self) -> str:
        """What `resolve` answers as ETag: the git blob id, or the sha256 for an LFS file (as the Hub does)."""
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True)
class Commit:
    """One commit: the full tree it leaves."""

    oid: str
    message: str
    date: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    """A repo: its commits, oldest first, and the branches pointing into them."""

    kind: str
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def commit(self, revision: str) -> Commit:
        """The commit that a branch name or a 40-hex commit id names."""
        oid = self.branches.get(revision, revision)
        for commit in self.commits:
            if commit.oid == oid:
                return commit
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")


class HubServer:
    """A Hub on 127.0.0.1: the socket is bound at construction, requests are served after `start()`.

    Set `writes_refused` to answer repo creations 401, as the Hub does without a valid write token.

    Args:
        storage: Folder for the file blobs (created if missing).
    """

    def __init__(self, storage: Path):
        self.storage = Path(storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.unhandled: list[str] = []
        self.requests: list[str] = []
        self.writes_refused = False
        self.lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint, e.g. `http://127.0.0.1:54321`."""
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve requests in a background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._http.serve_forever, name="hub-server", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()

    def commit_messages(self, repo_id: str, kind: str = "dataset") -> list[str]:
        """The messages of a repo's commits, oldest first (a new repo starts with "initial commit")."""
        return [commit.message for commit in self.repos[kind, repo_id].commits]

    def create_repo(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kind = body.get("type") or "model"
        repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
        url = f"{self.url}/{_url_prefix(kind)}{repo_id}"
        with self.lock:
            if (kind, repo_id) in self.repos:
                raise HubError(409, "RepoExists", f"You already created this {kind} repo", url=url)
            repo = Repo(kind, repo_id, private=body.get("visibility") == "private")
            self.repos[kind, repo_id] = repo
            self._add_commit(repo, "main", "initial commit", {".gitattributes": self.store(_GITATTRIBUTES)})
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def validate_yaml(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            _card_parts(body.get("content", ""))
        except yaml.YAMLError as e:
            return 400, {"errors": [{"message": str(e)}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def list_repos(self, kind: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted_tags = set(query.get("filter", []))
        searches = query.get("search", [])
        rows = []
        for repo in list(self.repos.values()):
            if repo.kind != _KINDS[kind]:
                continue
            info = self.repo_info(repo, repo.commit("main"))
            if wanted_tags <= set(info["tags"]) and all(s.lower() in repo.repo_id.lower() for s in searches):
                rows.append(_expanded(info, query.get("expand")))
        limit = query.get("limit")
        return rows[: int(limit[0])] if limit else rows

    def repo_info(self, repo: Repo, commit: Commit) -> dict[str, Any]:
        card_data, description = self._card(commit)
        return {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.commits[0].date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [str(tag) for tag in card_data.get("tags") or []],
            "cardData": card_data,
            "description": description,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }

    def preupload(self, commit: Commit, body: dict[str, Any]) -> dict[str, Any]:
        lfs_patterns = self._lfs_patterns(commit)
        files = []
        for request in body.get("files", []):
            path = request["path"]
            lfs = any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) for pattern in lfs_patterns)
            current = commit.files.get(path)
            remote_oid = None if current is None else (current.sha256 if lfs else current.oid)
            files.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote_oid}
            )
        return {"files": files, "commitOid": commit.oid}

    def lfs_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        """The basic LFS transfer: an upload action for each object not stored yet."""
        objects = []
        for item in body.get("objects", []):
            answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if not (self.storage / item["oid"]).exists():
                answer["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{item['oid']}"}}
            objects.append(answer)
        return {"transfer": "basic", "objects": objects}

    def lfs_upload(self, sha256: str, content: bytes) -> None:
        if hashlib.sha256(content).hexdigest() != sha256:
            raise HubError(400, "BadRequest", f"the uploaded content does not match sha256 {sha256}")
        (self.storage / sha256).write_bytes(content)

    def apply_commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with self.lock:
            files = dict(repo.commit(revision).files)
            for line in lines:
                _apply_operation(self, files, line)
            commit = self._add_commit(repo, revision, header.get("summary", ""), files)
        url = f"{self.url}/{_url_prefix(repo.kind)}{repo.repo_id}/commit/{commit.oid}"
        return {"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None}

    def entries(self, commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        """Tree entries under `prefix` (files and folders), like `/api/.../tree/{rev}/{prefix}`."""
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        folders: set[str] = set()
        files = []
        for path, stored in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(base + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                files.append(self._file_entry(path, stored))
        if base and not files and not folders:
            raise HubError(404, "EntryNotFound", f"{prefix} does not exist on this revision")
        return [_folder_entry(commit, path) for path in sorted(folders)] + files

    def path_entries(self, commit: Commit, paths: list[str]) -> list[dict[str, Any]]:
        """Entries of exactly these paths (files or folders); unknown paths are left out."""
        result = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                result.append(self._file_entry(path, commit.files[path]))
            elif any(name.startswith(f"{path}/") for name in commit.files):
                result.append(_folder_entry(commit, path))
        return result

    def content(self, stored: StoredFile) -> bytes:
        return (self.storage / stored.sha256).read_bytes()

    def store(self, content: bytes) -> StoredFile:
        """Keep `content` as a regular git blob."""
        sha256 = hashlib.sha256(content).hexdigest()
        target = self.storage / sha256
        if not target.exists():
            target.write_bytes(content)
        return StoredFile(git_blob_id(content), sha256, len(content), lfs=False)

    def stored_lfs_file(self, sha256: str) -> StoredFile:
        """An LFS file whose content was PUT before the commit."""
        target = self.storage / sha256
        if not target.exists():
            raise HubError(400, "BadRequest", f"LFS object {sha256} was not uploaded before the commit")
        size = target.stat().st_size
        return StoredFile(git_blob_id(_lfs_pointer(sha256, size)), sha256, size, lfs=True)

    def _file_entry(self, path: str, stored: StoredFile) -> dict[str, Any]:
        entry = {"type": "file", "oid": stored.oid, "size": stored.size, "path": path}
        if stored.lfs:
            pointer_size = len(_lfs_pointer(stored.sha256, stored.size))
            entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": pointer_size}
        return entry

    def _lfs_patterns(self, commit: Commit) -> list[str]:
        """The patterns that the repo's `.gitattributes` sends through LFS."""
        stored = commit.files.get(".gitattributes")
        lines = self.content(stored).decode().splitlines() if stored else []
        return [line.split()[0] for line in lines if "filter=lfs" in line]

    def _add_commit(self, repo: Repo, branch: str, message: str, files: dict[str, StoredFile]) -> Commit:
        parent = repo.branches.get(branch, "")
        date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        seed = json.dumps([parent, message, date, len(repo.commits), sorted((p, f.oid) for p, f in files.items())])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), message, date, files)
        repo.commits.append(commit)
        if not _COMMIT_ID.fullmatch(branch):
            repo.branches[branch] = commit.oid
        return commit

    def _card(self, commit: Commit) -> tuple[dict[str, Any], str]:
        if "README.md" not in commit.files:
            return {}, ""
        try:
            return _card_parts(self.content(commit.files["README.md"]).decode())
        except (yaml.YAMLError, UnicodeDecodeError):
            return {}, ""


def git_blob_id(content: bytes) -> str:
    """The git object id of a file (what the Hub calls a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    """What git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _url_prefix(kind: str) -> str:
    return "" if kind == "model" else f"{kind}s/"


def _folder_entry(commit: Commit, path: str) -> dict[str, Any]:
    digest = hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest()
    return {"type": "directory", "oid": digest, "size": 0, "path": path}


def _apply_operation(hub: HubServer, files: dict[str, StoredFile], line: dict[str, Any]) -> None:
    """Apply one NDJSON line of a commit to the tree `files`."""
    key, value = line["key"], line["value"]
    if key == "file":
        files[value["path"]] = hub.store(base64.b64decode(value["content"]))
    elif key == "lfsFile":
        files[value["path"]] = hub.stored_lfs_file(value["oid"])
    elif key == "deletedFile":
        files.pop(value["path"], None)
    elif key == "deletedFolder":
        folder = value["path"].rstrip("/") + "/"
        for path in [p for p in files if p.startswith(folder)]:
            del files[path]


def _card_parts(text: str) -> tuple[dict[str, Any], str]:
    """The card's YAML front matter and its description: the first paragraph of its body, as plain text."""
    match = _FRONT_MATTER.match(text)
    metadata = (yaml.safe_load(match["yaml"]) or {}) if match else {}
    body = match["body"] if match else text
    return (metadata if isinstance(metadata, dict) else {}), _first_paragraph(body)


def _first_paragraph(markdown: str) -> str:
    for paragraph in re.split(r"\n\s*\n", markdown):
        text = " ".join(line.strip() for line in paragraph.strip().splitlines())
        if text and not text.startswith(("#", "```", "|", "-", "<")):
            return _MARKDOWN_LINK.sub(r"\1", text)
    return ""


def _expanded(info: dict[str, Any], expand: list[str] | None) -> dict[str, Any]:
    """What a listing shows of a repo: every field, or `id` and the `expand=` ones."""
    if not expand:
        return {key: value for key, value in info.items() if key != "siblings"}
    return {key: value for key, value in info.items() if key in {"_id", "id", *expand}}


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) of a `Range: bytes=...` header, or None for the whole file."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    if match.group(1) == "":
        return max(0, size - int(match.group(2))), size - 1
    end = int(match.group(2)) if match.group(2) else size - 1
    return int(match.group(1)), min(end, size - 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: failed routes are recorded in `HubServer.unhandled` instead."""

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append(" ".join([method, self.path, *self.headers.get_all("Range", [])]))
        body = self._body() if method in ("POST", "PUT") else b""
        for route_method, pattern, name in _ROUTES:
            match = re.fullmatch(pattern, url.path)
            if route_method == method and match:
                params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                try:
                    getattr(self, f"_route_{name}")(params, parse_qs(url.query), body)
                except HubError as e:
                    headers = {"X-Error-Code": e.code, "X-Error-Message": str(e)}
                    self._send_json(e.status, {"error": str(e), **e.fields}, headers)
                return
        self.hub.unhandled.append(f"{method} {self.path}")
        self._send_json(404, {"error": f"no route for {method} {url.path}"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked_body()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _chunked_body(self) -> bytes:
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():
            pass
        return b"".join(chunks)

    def _repo(self, params: dict[str, str]) -> Repo:
        kind = _KINDS[params.get("kind") or "models"]
        repo = self.hub.repos.get((kind, params["repo"]))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository not found: {params['repo']}")
        return repo

    def _commit(self, params: dict[str, str]) -> tuple[Repo, Commit]:
        repo = self._repo(params)
        return repo, repo.commit(params.get("rev") or "main")

    def _route_create_repo(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        if self.hub.writes_refused:
            raise HubError(401, "Unauthorized", "Invalid credentials in Authorization header")
        self._send_json(*self.hub.create_repo(json.loads(body)))

    def _route_validate_yaml(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        self._send_json(*self.hub.validate_yaml(json.loads(body)))

    def _route_list_repos(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        self._send_json(200, self.hub.list_repos(params["kind"], query))

    def _route_repo_info(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo, commit = self._commit(params)
        self._send_json(200, self.hub.repo_info(repo, commit))

    def _route_preupload(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        _, commit = self._commit(params)
        self._send_json(200, self.hub.preupload(commit, json.loads(body)))

    def _route_commit(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        repo, _ = self._commit(params)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        self._send_json(200, self.hub.apply_commit(repo, params["rev"], lines))

    def _route_tree(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        _, commit = self._commit(params)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        self._send_json(200, self.hub.entries(commit, params.get("path", ""), recursive))

    def _route_paths_info(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        _, commit = self._commit(params)
        paths = parse_qs(body.decode()).get("paths", [])
        self._send_json(200, self.hub.path_entries(commit, paths))

    def _route_resolve(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        _, commit = self._commit(params)
        stored = commit.files.get(params["path"])
        if stored is None:
            raise HubError(404, "EntryNotFound", f"Entry not found: {params['path']}")
        content = self.hub.content(stored)
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.etag}"', "Accept-Ranges": "bytes"}
        byte_range = _byte_range(self.headers.get("Range"), len(content))
        if byte_range is None:
            self._send(200, content, "application/octet-stream", headers)
            return
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        self._send(206, content[start : end + 1], "application/octet-stream", headers)

    def _route_lfs_batch(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        self._repo(params)
        self._send_json(200, self.hub.lfs_batch(json.loads(body)))

    def _route_lfs_upload(self, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> None:
        self.hub.lfs_upload(params["sha256"], body)
        self._send_json(200, {})

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers or {})

    def _send(self, status: int, content: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)
