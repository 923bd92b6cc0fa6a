"""bench/bench_attacks.py end to end at smoke size: every registered attack timed per gradient
(Square per query), and the packages' EOT folded against unfolded with equal examples."""

import json
import subprocess
import sys
from pathlib import Path

from diffrob import attacks

ROOT = Path(__file__).resolve().parents[1]


def test_bench_attacks_times_every_attack_and_the_fold(tmp_path: Path) -> None:
    out = tmp_path / "attacks.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_attacks.py"), "--params",
                          "params/smoke.yaml", "--images", "2", "--steps", "1", "--evals", "2",
                          "--rounds", "1", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    timed = {k.split("/")[1] for k in result if k.startswith("per_")}
    assert timed == set(attacks.NAMES)
    assert "per_query_vs_pgd-eot_gradient/square" in result
    for name in ("apgd-eot", "apgd-t-eot", "eotpgd"):  # batched and looped calls may round
        assert result[f"fold_speedup/{name}"] > 0 and result[f"fold_same_pixels/{name}"] > 0.97
