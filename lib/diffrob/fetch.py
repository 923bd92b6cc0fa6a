"""The paper's checkpoints and data (Appendix B), fetched once on a machine with network.

``diffrob fetch cifar10|imagenet`` puts on disk what :mod:`diffrob.worlds.cifar10` and
:mod:`diffrob.worlds.imagenet` read (the worlds themselves never download). Every file
has a row in :data:`SOURCES`: its URL, where it goes, its size and a recorded hash, with
the kind of hash and where the value was found. A download

- prints every file's size before it starts, and a progress bar while it runs;
- resumes a partial ``<file>.part`` with an HTTP Range request;
- is refused and removed if it is an HTML page (a download or error page instead of
  the file) or its size or hash differs, and the error names the URL and a manual way;
- is accepted with a warning, its SHA-256 printed, where no hash is published.

A file that is already there and verified is not downloaded again. The folders and
file names are those the worlds read (``tests/test_fetch.py`` checks them against the
worlds' own constants, so that ``diffrob fetch`` need not import the worlds' torch stack).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import re
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte before a download stops (a rerun resumes it)
AGENT = "diffrob-fetch"
KINDS = ("sha256", "sha256-prefix", "md5", "")  # "": no hash published
GDRIVE_ID = "1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC"  # RobustBench's cifar10/Linf/Standard.pt
HUB_ID = "google/ddpm-cifar10-32"  # diffrob.worlds.cifar10.HUB_ID
HUB_REVISION = "267b167dc01f0e4e61923ea244e8b988f84deb80"  # its main, with safetensors weights
HUB = f"https://huggingface.co/{HUB_ID}"


class FetchError(FileNotFoundError):
    """A file could not be fetched as recorded (unreachable, cut short, an HTML page or
    another file); the message names the URL and a manual way."""


@dataclass(frozen=True)
class Source:
    """One file of a world: where it comes from, where it goes, and how it is checked.

    ``root`` names the folder ``path`` is relative to: ``model_dir``, ``data_dir`` or
    ``ddpm_dir`` (the diffusers folder of the CIFAR-10 DDPM, by default its snapshot in
    the Hugging Face cache). ``unpack`` is, for an archive, the member the world reads:
    the archive is extracted beside itself unless that member is there.
    """

    what: str
    url: str
    root: str
    path: str
    size: int | None  # bytes; None where not published
    kind: str  # one of KINDS
    digest: str  # lower-case hex ('' with kind '')
    found: str  # where the size and hash were found
    manual: str  # how to get the file by hand
    unpack: str = ""


def _hub_file(name: str, size: int | None, sha256: str, found: str, what: str) -> Source:
    return Source(what, f"{HUB}/resolve/{HUB_REVISION}/{name}", "ddpm_dir", name, size,
                  "sha256", sha256, found,
                  f"`hf download {HUB_ID} --revision {HUB_REVISION}`, or the file's "
                  f"download link on {HUB}/tree/{HUB_REVISION}")


_HUB_CONFIG = ("measured on this revision by a third party (huggingface.co lists no sha256 "
               "for files outside LFS); size from the hub's file list")
SOURCES: dict[str, list[Source]] = {
    "cifar10": [
        Source("classifier: RobustBench's Standard WideResNet-28-10",
               f"https://drive.usercontent.google.com/download?id={GDRIVE_ID}&export=download"
               f"&confirm=t", "model_dir", "cifar10/Linf/Standard.pt", None, "", "",
               "RobustBench publishes neither size nor hash",
               f"open https://drive.google.com/uc?id={GDRIVE_ID} in a browser and confirm "
               f"Google Drive's warning"),
        _hub_file("config.json", 699,
                  "49579448cd5728fb83f14186de12464eee143d2f5dccb11b8e13744d712eae9d",
                  _HUB_CONFIG, "purifier: DDPM CIFAR-10 UNet config"),
        _hub_file("diffusion_pytorch_model.safetensors", None,
                  "1558dbe3fb093b0857d473e376b711eeda1b186c557be5e85b3a56300cd49f0f",
                  "the hub's Git LFS details of the file (143 MB)",
                  "purifier: DDPM CIFAR-10 weights (143 MB)"),
        _hub_file("scheduler_config.json", 256,
                  "da5d9d26605d2aab854e8f2f2b26d3a407618de17b948bdb7d3846fb0561c7d3",
                  _HUB_CONFIG, "purifier: DDPM scheduler config"),
        Source("data: CIFAR-10, python version",
               "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "data_dir",
               "cifar-10-python.tar.gz", 170_498_071, "sha256",
               "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
               "Keras' cifar10.load_data file_hash (torchvision's md5 "
               "c58f30108f718f92721af3b95e74349a is of the same file)",
               "the 'CIFAR-10 python version' link on https://www.cs.toronto.edu/~kriz/cifar.html",
               unpack="cifar-10-batches-py/test_batch"),
    ],
    "imagenet": [
        Source("purifier: guided diffusion 256x256 unconditional",
               "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
               "256x256_diffusion_uncond.pt", "model_dir", "imagenet/256x256_diffusion_uncond.pt",
               2_211_383_297, "sha256",
               "a37c32fffd316cd494cf3f35b339936debdc1576dad13fe57c42399a5dbc78b1",
               "Disco Diffusion's model table (the Azure blob's Content-MD5 is "
               "fd9dd2335b8736d521de0aed54bd90ca)",
               "the '256x256 diffusion (not class conditional)' link in the README of "
               "https://github.com/openai/guided-diffusion"),
        Source("classifier: torchvision ResNet-50, ImageNet-1K v1 weights",
               "https://download.pytorch.org/models/resnet50-0676ba61.pth", "model_dir",
               "imagenet/resnet50-0676ba61.pth", 102_530_333, "sha256",
               "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
               "measured by third parties; its first 8 digits are the file name's, which "
               "torchvision checks",
               "https://download.pytorch.org/models/resnet50-0676ba61.pth in a browser, or "
               "torchvision's resnet50(weights='IMAGENET1K_V1'), which fills the torch hub "
               "cache the world also reads"),
    ],
}
IMAGENET_VAL = ("ImageNet validation images: not downloadable without an image-net.org "
                "account. Sign in at https://image-net.org, download ILSVRC2012_img_val.tar, "
                "extract it into {folder} and sort it into one folder per wnid (the "
                "usual valprep.sh does); the world reads the first n_images of RobustBench's "
                "list (docs/worlds.md).")


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def part_of(path: Path) -> Path:
    """Where the download of ``path`` grows until it is verified."""
    return path.with_name(path.name + ".part")


def hub_snapshot(cache: str | Path) -> Path:
    """The folder of ``google/ddpm-cifar10-32`` at :data:`HUB_REVISION` in a Hugging Face
    hub cache, where ``snapshot_download(..., local_files_only=True)`` finds it."""
    return Path(cache) / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / HUB_REVISION


def point_main_at(snapshot: Path) -> None:
    """Write ``refs/main`` of the hub cache entry holding ``snapshot`` (its revision), as
    huggingface_hub does after a download: the cifar10 world resolves the hub id so."""
    ref = snapshot.parents[1] / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(snapshot.name)


def file_hash(path: Path, kind: str) -> str:
    h = hashlib.md5() if kind == "md5" else hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def problem(source: Source, path: Path, content_type: str = "") -> str:
    """Why ``path`` is not ``source``'s file, or '' if it is (as far as its record tells)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if "text/html" in content_type.lower() or re.match(rb"\s*<(!doctype|html)", head, re.I):
        return "an HTML page instead of the file"
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        return f"{size:,} bytes, not the recorded {source.size:,}"
    if source.kind:
        got = file_hash(path, source.kind)
        if not (got.startswith(source.digest) if source.kind == "sha256-prefix"
                else got == source.digest):
            return f"{source.kind} {got}, not the recorded {source.digest}"
    return ""


def _accepted(source: Source, path: Path) -> str:
    """The line that reports ``path`` as ``source``'s file (a warning where no hash is known)."""
    if source.kind:
        return f"verified ({source.kind}): {path}"
    return (f"warning: no hash is recorded for {source.what}; accepted unverified: {path}, "
            f"sha256 {file_hash(path, 'sha256')} (record it in diffrob.fetch.SOURCES)")


def _unreachable(source: Source, why: str, part: Path | None = None) -> FetchError:
    resume = (f" The {megabytes(part.stat().st_size)} received are kept in {part}: run the same "
              f"command again to resume." if part is not None and part.is_file() else "")
    return FetchError(f"{source.url}: {why}.{resume} By hand: {source.manual}.")


def _transfer(source: Source, part: Path, progress: bool) -> str:
    """Append the rest of ``source.url`` to ``part`` (all of it if the server ignores the
    Range); return the response's content type. A short body leaves ``part`` to resume."""
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": AGENT, **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(source.url, headers=headers),
                                          timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing after the part's bytes: it is the whole file
            return ""
        raise _unreachable(source, f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _unreachable(source, f"not reachable ({getattr(e, 'reason', e)})") from None
    with response:
        if response.status != 206:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else source.size
        with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=Path(source.path).name, disable=not progress) as bar:
            try:
                while block := response.read(CHUNK):
                    f.write(block)
                    bar.update(len(block))
                    have += len(block)
            except (OSError, http.client.HTTPException) as e:
                raise _unreachable(source, f"interrupted after {have:,} bytes ({e!r})",
                                   part) from None
        if total and have < total:
            raise _unreachable(source, f"the connection closed after {have:,} of {total:,} "
                               f"bytes", part)
        return response.headers.get("Content-Type", "")


def download(source: Source, path: str | Path, progress: bool = True) -> Path:
    """``path`` holding ``source``'s file: kept if already there and verified, else fetched
    from ``source.url`` (resuming ``path.part``) and checked; :class:`FetchError` if it
    cannot be (an HTML page or a wrong file is removed first)."""
    path = Path(path)
    if path.is_file():
        why = problem(source, path)
        if not why:
            print(f"already there, not downloaded again; {_accepted(source, path)}")
            return path
        print(f"{path} is {why}: downloading it again")
    part = part_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content_type = _transfer(source, part, progress)
    why = problem(source, part, content_type)
    if why:
        part.unlink()
        raise FetchError(f"{source.url} gave {why}; refused and removed. By hand: "
                         f"{source.manual}; save it as {path}.")
    part.replace(path)
    print(_accepted(source, path))
    return path


def unpack(source: Source, archive: Path) -> None:
    """Extract ``archive`` beside itself, unless ``source.unpack`` is already there."""
    member = archive.parent / source.unpack
    if member.is_file():
        print(f"already unpacked: {member}")
        return
    with tarfile.open(archive) as tar:
        tar.extractall(archive.parent, filter="data")
    if not member.is_file():
        raise FetchError(f"{archive}: holds no {source.unpack}. By hand: {source.manual}.")
    print(f"unpacked: {member}")


def fetch(sources: list[Source], folders: dict[str, Path], progress: bool = True) -> list[Path]:
    """Every source into ``folders[source.root] / source.path``, the sizes printed first."""
    targets = [(s, Path(folders[s.root]) / s.path) for s in sources]
    width = max((len(str(path)) for _, path in targets), default=0)
    for source, path in targets:
        part = part_of(path)
        state = ("there (checked below)" if path.is_file() else
                 f"{megabytes(part.stat().st_size)} there, resumes" if part.is_file() else
                 "to download")
        size = megabytes(source.size) if source.size else "size not recorded"
        print(f"  {str(path):<{width}}  {size:>17}  {state:<22} {source.what}")
    todo = [s for s, path in targets if not path.is_file()]
    unknown = sum(s.size is None for s in todo)
    print(f"to download: {megabytes(sum(s.size or 0 for s in todo))}"
          + (f" and {unknown} file(s) of unrecorded size" if unknown else ""))
    done = []
    for source, path in targets:
        done.append(download(source, path, progress))
        if source.unpack:
            unpack(source, path)
    return done


def ddpm_folder(spec: str, cache: str | Path) -> Path:
    """Where the CIFAR-10 DDPM goes: its hub snapshot in ``cache`` for the world's default
    ``diffusion_model`` ('' or the hub id), else the folder ``spec`` names."""
    return hub_snapshot(cache) if spec in ("", HUB_ID) else Path(spec).expanduser()


def add_parser(subparsers) -> None:
    """The ``fetch`` sub-command of ``diffrob``."""
    help = ("download the paper's checkpoints and data of a world (needs network; "
            "verifies, resumes, never downloads a verified file twice)")
    f = subparsers.add_parser("fetch", help=help, description=help)
    f.add_argument("world", choices=tuple(SOURCES), help="the paper's world")
    f.add_argument("--models-only", action="store_true", help="the checkpoints, not the data")
    f.add_argument("--params", help="parameter file whose model_dir, data_dir and "
                                    "diffusion_model to fill (default: their defaults)")
    f.add_argument("--model-dir", help="instead of the parameters' model_dir")
    f.add_argument("--data-dir", help="instead of the parameters' data_dir")
    f.add_argument("--hub-cache", help="Hugging Face hub cache for the CIFAR-10 DDPM "
                                       "(default: huggingface_hub's, HF_HUB_CACHE)")
    f.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """``diffrob fetch``: the world's files into the folders its parameters name."""
    from . import params

    try:
        p = params.load(args.params) if args.params else params.load(world=args.world)
    except ValueError as err:
        raise FetchError(f"--params: {err}") from None
    if p.world != args.world:
        raise FetchError(f"--params {args.params} is world {p.world!r}, not {args.world!r}")
    cache = args.hub_cache
    if cache is None:
        from huggingface_hub import constants

        cache = constants.HF_HUB_CACHE
    folders = {"model_dir": Path(args.model_dir or p.model_dir),
               "data_dir": Path(args.data_dir or p.data_dir),
               "ddpm_dir": ddpm_folder(p.diffusion_model, cache)}
    sources = [s for s in SOURCES[args.world] if not (args.models_only and s.root == "data_dir")]
    print(f"diffrob fetch {args.world}: {len(sources)} files")
    fetch(sources, folders)
    if any(s.root == "ddpm_dir" for s in sources) and folders["ddpm_dir"] == hub_snapshot(cache):
        point_main_at(folders["ddpm_dir"])
    print(f"diffrob fetch {args.world}: {len(sources)} files in place")
    if args.world == "imagenet" and not args.models_only:
        print(IMAGENET_VAL.format(folder=folders["data_dir"] / "imagenet" / "val"))
