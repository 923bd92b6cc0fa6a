"""The ADM UNet of guided diffusion (Dhariwal & Nichol 2021), as the ImageNet purifier uses it.

Our own compact implementation of the architecture of openai/guided-diffusion's
``UNetModel`` in the variant of the unconditional 256x256 checkpoint
(``256x256_diffusion_uncond.pt``, paper Appendix B): residual blocks with
scale-shift (FiLM) normalisation, residual up/down-sampling blocks, multi-head
self-attention (64 channels per head, the "legacy" head order) at the 32, 16
and 8 pixel resolutions, and 6 output channels (eps and the learned-variance
interpolation v). Module and parameter names reproduce the official ones, so
the official state dict loads as it is: :data:`UNCOND_256` has exactly its 566
keys and 552,814,086 parameters.

The model is only used for inference (purification), so the official zero
initialisation of output layers is left out: a randomly initialised model
gives non-trivial outputs in tests.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ADMConfig:
    """Architecture settings; the defaults are the 256x256 unconditional model's flags
    (guided-diffusion README: ``--attention_resolutions 32,16,8 --image_size 256
    --learn_sigma True --num_channels 256 --num_head_channels 64 --num_res_blocks 2
    --resblock_updown True --use_scale_shift_norm True``; channel_mult from
    ``script_util.create_model`` for image_size 256)."""

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 256
    out_channels: int = 6  # learn_sigma: eps and v
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (32, 16, 8)  # in pixels
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_head_channels: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.model_channels % 32 or any((self.model_channels * m) % 32 for m in self.channel_mult):
            raise ValueError(f"ADMConfig: every channel count must be a multiple of 32 "
                             f"(GroupNorm(32, .)), got model_channels={self.model_channels}, "
                             f"channel_mult={self.channel_mult}")
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(f"ADMConfig: image_size {self.image_size} is not divisible by "
                             f"2^{len(self.channel_mult) - 1}")


UNCOND_256 = ADMConfig()


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos | sin] of (possibly fractional) timesteps, guided-diffusion's order."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


class _Timed(nn.Module):
    """A layer that also takes the timestep embedding."""


class ResBlock(_Timed):
    """Residual block with scale-shift norm: out_norm(h) * (1 + scale) + shift (FiLM).

    ``up``/``down`` resample (nearest x2 / 2x2 average) both paths between the
    first normalisation and the first convolution, as ``resblock_updown`` does.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None,
                 up: bool = False, down: bool = False, dropout: float = 0.0):
        super().__init__()
        out = out_channels or channels
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out))
        self.out_layers = nn.Sequential(_norm(out), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)
        self.resample = _upsample if up else _downsample if down else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.resample is None:
            h = self.in_layers(x)
        else:
            h = self.in_layers[2](self.resample(self.in_layers[:2](x)))
            x = self.resample(x)
        scale, shift = self.emb_layers(emb).to(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers[1:](h)


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _downsample(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 2)


class AttentionBlock(_Timed):
    """Spatial self-attention; q, k, v split per head after the heads ("legacy" order)."""

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat)).reshape(b * self.heads, 3 * c // self.heads, -1)
        q, k, v = (u.transpose(1, 2) for u in qkv.chunk(3, dim=1))  # (b*heads, T, c/heads)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c, -1)
        return (flat + self.proj_out(a)).reshape(b, c, *spatial)


class _Sequential(nn.Sequential):
    """guided-diffusion's TimestepEmbedSequential: passes the embedding to timed layers."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, _Timed) else layer(x)
        return x


class ADMUNet(nn.Module):
    """``model(x_t, k) -> (N, out_channels, H, W)``: x_t in [-1,1], k the timestep index (0..T-1).

    With learned sigma the output holds eps (first 3 channels) and v (last 3),
    which :class:`diffrob.purifiers.Purifier` reads as guided diffusion does.
    """

    def __init__(self, cfg: ADMConfig = UNCOND_256):
        super().__init__()
        self.cfg = cfg
        mc, emb = cfg.model_channels, 4 * cfg.model_channels
        heads = cfg.num_head_channels
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = mc * cfg.channel_mult[0]
        self.input_blocks = nn.ModuleList([_Sequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skips, res = [ch], cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb, mc * mult, dropout=cfg.dropout)]
                ch = mc * mult
                if res in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, heads))
                self.input_blocks.append(_Sequential(*layers))
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.input_blocks.append(_Sequential(ResBlock(ch, emb, ch, down=True,
                                                              dropout=cfg.dropout)))
                skips.append(ch)
                res //= 2
        self.middle_block = _Sequential(ResBlock(ch, emb, dropout=cfg.dropout),
                                        AttentionBlock(ch, heads),
                                        ResBlock(ch, emb, dropout=cfg.dropout))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb, mc * mult, dropout=cfg.dropout)]
                ch = mc * mult
                if res in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, heads))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb, ch, up=True, dropout=cfg.dropout))
                    res *= 2
                self.output_blocks.append(_Sequential(*layers))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(),
                                 nn.Conv2d(ch, cfg.out_channels, 3, padding=1))

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        t_emb = timestep_embedding(timesteps, self.cfg.model_channels)
        emb = self.time_embed(t_emb.to(self.time_embed[0].weight.dtype))
        skips, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def _empty_model(cfg: ADMConfig) -> ADMUNet:
    with torch.device("meta"):
        return ADMUNet(cfg)


def check_state(state: object, model: ADMUNet, path: str | Path) -> None:
    """``ValueError`` naming ``path`` and the first differing keys unless ``state`` is a state
    dict with exactly the keys and shapes of ``model`` (e.g. an empty one on the meta device)."""
    cfg = model.cfg
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else {}
    if want != got:
        missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise ValueError(f"{path}: not a state dict of the guided-diffusion UNet {cfg}; "
                         f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
                         f"wrong shapes {wrong[:5]} "
                         f"({len(missing)}/{len(unexpected)}/{len(wrong)} in all)")


CONFIG_KEY = "adm_config"  # safetensors metadata: the architecture of the file's weights


def save_safetensors(state: dict[str, Tensor], path: str | Path, cfg: ADMConfig = UNCOND_256) -> Path:
    """Write a state dict of ``cfg``'s architecture as safetensors, ``cfg`` in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file({k: v.contiguous() for k, v in state.items()}, path,
              metadata={CONFIG_KEY: json.dumps(asdict(cfg))})
    return path


def file_config(path: str | Path) -> ADMConfig:
    """The architecture a weights file holds: a safetensors file's metadata config if it has
    one (:func:`save_safetensors`), else the official :data:`UNCOND_256`."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return UNCOND_256
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        text = (f.metadata() or {}).get(CONFIG_KEY)
    if text is None:
        return UNCOND_256
    fields = json.loads(text)
    return ADMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def load_adm(path: str | Path, device: torch.device | str = "cpu") -> ADMUNet:
    """Build :class:`ADMUNet` without initialising it and load a weights file into it.

    ``path`` is the official ``torch.save`` file (a plain state dict of float32
    tensors, read with ``weights_only=True``) or a safetensors file
    (:func:`convert_to_safetensors`); the architecture is :func:`file_config`'s.
    The key set must match exactly; a mismatch raises ``ValueError`` naming the
    file and the first differing keys.
    """
    path = Path(path)
    cfg = file_config(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(path, device=str(device))
    else:
        state = torch.load(path, map_location=device, weights_only=True)
    model = _empty_model(cfg)
    check_state(state, model, path)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.to(device)


def convert_to_safetensors(pt_path: str | Path, out_path: str | Path | None = None,
                           cfg: ADMConfig = UNCOND_256) -> Path:
    """One-time conversion of a ``torch.save`` state dict (the official ``.pt``) to safetensors:
    the same keys and values, checked against ``cfg``, which goes into the metadata.

    Returns the path written (default: beside the input, suffix ``.safetensors``).
    """
    pt_path = Path(pt_path)
    out_path = Path(out_path) if out_path else pt_path.with_suffix(".safetensors")
    state = torch.load(pt_path, map_location="cpu", weights_only=True)
    check_state(state, _empty_model(cfg), pt_path)
    return save_safetensors(state, out_path, cfg)
