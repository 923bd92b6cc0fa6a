"""`diffrob fetch` against a local HTTP server on 127.0.0.1: a good file, a resumed one, a
truncated one, a wrong hash, an HTML page, and a file already there (no request made)."""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diffrob import fetch
from diffrob.fetch import FetchError, Source

BODY = bytes(range(256)) * 40  # 10 240 bytes
SHA = hashlib.sha256(BODY).hexdigest()
HTML = b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses</body></html>"


class Server:
    """Files by URL path, each with its options; every request is logged (path, Range)."""

    def __init__(self):
        self.files: dict[str, dict] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                spec = server.files.get(self.path)
                if spec is None:
                    self.send_error(404)
                    return
                body, start = spec["body"], 0
                ranged = self.headers.get("Range")
                if ranged and spec.get("ranges", True):
                    start = int(re.fullmatch(r"bytes=(\d+)-", ranged).group(1))
                    if start >= len(body):
                        self.send_error(416)
                        return
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", spec.get("type", "application/octet-stream"))
                sent = body[start:spec.get("cut", len(body))]
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(sent)  # a cut body: Content-Length larger than what comes

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def source(self, name: str, body: bytes = BODY, kind: str = "sha256", digest: str = SHA,
               size: int | None = None, **options) -> Source:
        self.files[f"/{name}"] = {"body": body, **options}
        return Source(f"test file {name}", f"{self.url}/{name}", "model_dir", name, size, kind,
                      digest, "the test", "a browser")


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_a_good_file_is_fetched_verified_and_the_part_file_is_gone(server, tmp_path, capsys):
    path = fetch.download(server.source("good.bin", size=len(BODY)), tmp_path / "good.bin",
                          progress=False)
    assert path.read_bytes() == BODY and not (tmp_path / "good.bin.part").exists()
    assert "verified (sha256)" in capsys.readouterr().out


def test_a_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    (tmp_path / "r.bin.part").write_bytes(BODY[:4000])
    fetch.download(server.source("r.bin"), tmp_path / "r.bin", progress=False)
    assert (tmp_path / "r.bin").read_bytes() == BODY
    assert server.requests == [("/r.bin", "bytes=4000-")]


def test_a_server_that_ignores_the_range_sends_it_all_and_the_part_starts_over(server, tmp_path):
    (tmp_path / "n.bin.part").write_bytes(b"stale" * 100)
    fetch.download(server.source("n.bin", ranges=False), tmp_path / "n.bin", progress=False)
    assert (tmp_path / "n.bin").read_bytes() == BODY


def test_a_truncated_download_keeps_its_part_and_a_rerun_resumes_it(server, tmp_path):
    source = server.source("t.bin", cut=3000)
    with pytest.raises(FetchError, match=r"t\.bin: the connection closed after 3,000 of "
                       r"10,240 bytes.*run the same command again to resume"):
        fetch.download(source, tmp_path / "t.bin", progress=False)
    assert (tmp_path / "t.bin.part").read_bytes() == BODY[:3000]
    assert not (tmp_path / "t.bin").exists()
    server.files["/t.bin"].pop("cut")
    fetch.download(source, tmp_path / "t.bin", progress=False)
    assert (tmp_path / "t.bin").read_bytes() == BODY and server.requests[-1][1] == "bytes=3000-"


@pytest.mark.parametrize("kind,digest,size,why", [
    ("sha256", "0" * 64, None, "sha256 " + SHA + ", not the recorded " + "0" * 64),
    ("sha256-prefix", "0676ba61", None, "not the recorded 0676ba61"),
    ("md5", hashlib.md5(b"other").hexdigest(), None, "md5 " + hashlib.md5(BODY).hexdigest()),
    ("sha256", SHA, len(BODY) + 1, "10,240 bytes, not the recorded 10,241"),
])
def test_a_wrong_file_is_refused_and_removed_naming_the_url_and_a_manual_way(
        server, tmp_path, kind, digest, size, why):
    source = server.source("w.bin", kind=kind, digest=digest, size=size)
    with pytest.raises(FetchError) as err:
        fetch.download(source, tmp_path / "w.bin", progress=False)
    assert why in str(err.value) and source.url in str(err.value)
    assert f"By hand: a browser; save it as {tmp_path / 'w.bin'}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("body,content_type", [(b"Sign in to continue", "text/html"),
                                               (HTML, "application/octet-stream")])
def test_an_html_page_is_refused_and_removed(server, tmp_path, body, content_type):
    """Google Drive's warning page instead of RobustBench's checkpoint: by its content type,
    or by its first bytes when the type says binary (and no hash is recorded)."""
    source = server.source("page", body=body, kind="", digest="", type=content_type)
    with pytest.raises(FetchError, match=r"/page gave an HTML page instead of the file; "
                       r"refused and removed\. By hand: a browser"):
        fetch.download(source, tmp_path / "Standard.pt", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_verified_file_already_there_is_not_requested_again(server, tmp_path, capsys):
    source = server.source("here.bin", size=len(BODY))
    (tmp_path / "here.bin").write_bytes(BODY)
    fetch.fetch([source], {"model_dir": tmp_path}, progress=False)
    assert server.requests == []
    out = capsys.readouterr().out
    assert "there (checked below)" in out and "to download: 0.0 MB" in out
    assert "already there, not downloaded again; verified (sha256)" in out


def test_a_wrong_file_already_there_is_fetched_again(server, tmp_path):
    (tmp_path / "x.bin").write_bytes(HTML)
    fetch.download(server.source("x.bin"), tmp_path / "x.bin", progress=False)
    assert (tmp_path / "x.bin").read_bytes() == BODY and len(server.requests) == 1


def test_a_file_without_a_published_hash_is_accepted_with_a_warning_and_its_sha256(
        server, tmp_path, capsys):
    fetch.download(server.source("u.bin", kind="", digest=""), tmp_path / "u.bin",
                   progress=False)
    assert f"warning: no hash is recorded for test file u.bin; accepted unverified: " \
           f"{tmp_path / 'u.bin'}, sha256 {SHA}" in capsys.readouterr().out


def test_an_unreachable_source_names_the_url_and_a_manual_way(server, tmp_path):
    source = Source("absent", f"{server.url}/absent", "model_dir", "a", None, "", "", "", "ask")
    with pytest.raises(FetchError, match=r"/absent: HTTP 404 .*By hand: ask\."):
        fetch.download(source, tmp_path / "a", progress=False)


def _test_tarball() -> bytes:
    data = pickle.dumps({"data": [[0] * 3072], "labels": [3]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_cifar10_layout_the_world_reads_hub_snapshot_and_unpacked_test_batch(
        server, tmp_path):
    """The DDPM files land in a hub snapshot that huggingface_hub resolves offline, as the
    cifar10 world does; the tarball is unpacked to ``cifar-10-batches-py/test_batch``."""
    from huggingface_hub import snapshot_download

    tarball = _test_tarball()
    names = ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"]
    hub = [server.source(n, body=n.encode()) for n in names]
    hub = [Source(s.what, s.url, "ddpm_dir", s.path, None, "", "", "", "") for s in hub]
    data = server.source("cifar-10-python.tar.gz", body=tarball,
                         digest=hashlib.sha256(tarball).hexdigest())
    data = Source(data.what, data.url, "data_dir", data.path, len(tarball), data.kind,
                  data.digest, "", "", unpack="cifar-10-batches-py/test_batch")
    cache = tmp_path / "hub"
    folders = {"ddpm_dir": fetch.hub_snapshot(cache), "data_dir": tmp_path / "data"}
    fetch.fetch([*hub, data], folders, progress=False)
    fetch.point_main_at(folders["ddpm_dir"])
    found = Path(snapshot_download(fetch.HUB_ID, cache_dir=cache, local_files_only=True))
    assert sorted(p.name for p in found.iterdir()) == names
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    requests = len(server.requests)
    fetch.fetch([*hub, data], folders, progress=False)  # all there: nothing requested
    assert len(server.requests) == requests


def test_the_table_names_the_files_where_the_worlds_read_them(tmp_path):
    from diffrob.worlds import cifar10, imagenet

    for source in [s for rows in fetch.SOURCES.values() for s in rows]:
        assert source.kind in fetch.KINDS and source.found and source.manual
        length = {"sha256": 64, "md5": 32, "sha256-prefix": 8, "": 0}[source.kind]
        assert re.fullmatch(f"[0-9a-f]{{{length}}}", source.digest), source
    rows = {s.path: s for rows in fetch.SOURCES.values() for s in rows}
    models = tmp_path / "models"
    for name in ["cifar10/Linf/Standard.pt", "imagenet/resnet50-0676ba61.pth",
                 "imagenet/256x256_diffusion_uncond.pt"]:
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        (models / name).touch()
    assert cifar10.classifier_path(models) == models / "cifar10/Linf/Standard.pt"
    assert imagenet.classifier_path(models) == models / rows[
        f"imagenet/{imagenet.RESNET_FILE}"].path
    assert imagenet.diffusion_path(models) == models / f"imagenet/{imagenet.DIFFUSION_FILE}"
    assert rows["cifar-10-python.tar.gz"].unpack == str(cifar10.TEST_BATCH)
    assert fetch.HUB_ID == cifar10.HUB_ID
    assert {s.path for s in fetch.SOURCES["cifar10"] if s.root == "ddpm_dir"} >= {
        "config.json", cifar10.WEIGHTS[0], "scheduler_config.json"}


def test_the_command_line_and_its_errors_are_user_errors(tmp_path):
    from diffrob.cli import _is_user_error

    parser = argparse.ArgumentParser()
    fetch.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fetch", "imagenet", "--models-only", "--model-dir", "m",
                              "--params", "params/cifar10.yaml"])
    assert (args.world, args.models_only, args.model_dir, args.run) == (
        "imagenet", True, "m", fetch.run)
    with pytest.raises(FetchError, match=r"params/cifar10.yaml is world 'cifar10', not "
                       r"'imagenet'") as err:
        args.run(args)
    assert _is_user_error(err.value)
    assert fetch.ddpm_folder("", tmp_path) == fetch.ddpm_folder(fetch.HUB_ID, tmp_path) == (
        tmp_path / "models--google--ddpm-cifar10-32" / "snapshots" / fetch.HUB_REVISION)
    assert fetch.ddpm_folder(str(tmp_path / "ddpm"), tmp_path) == tmp_path / "ddpm"
