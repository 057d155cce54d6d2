"""
The benchmark suite's critical-difference diagram
=================================================

The benchmark suite runs every strategy on data sets split into a *tune* half, where
defaults may be chosen, and a *confirm* half, the honest estimate on data nobody tuned on.
Each strategy's area under the budget curve (AUBC) is ranked per data set; the diagram
puts the mean ranks on one axis and joins strategies whose mean ranks are closer than the
Nemenyi critical difference (Demšar, 2006).

The raw results (one SQLite database per data set, hours of computing) are not in the
repository; the stored report ``benchmarks/results/suite-tune.md`` is. This example reads
its AUBC table and the mean ranks it states (computed from the unrounded AUBCs), checks
them against ranks recomputed from the table's rounded values, and draws the diagram with
the function ``ralif report`` uses (``ralif.bench.suite_report.plot_cd``). Nothing is
simulated.
"""

# %%
import re
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import rankdata

from ralif.bench.suite_report import friedman_nemenyi, plot_cd

STORED = Path("benchmarks", "results", "suite-tune.md")  # found from the repository or examples/
REPORT = next(p / STORED for p in (Path.cwd(), *Path.cwd().parents) if (p / STORED).is_file())
text = REPORT.read_text(encoding="utf-8")


def first_table(text):
    """The header and rows of the first Markdown table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| data set"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows[0], rows[2:]  # rows[1] is the |---| line


header, rows = first_table(text)
strategies = header[1:]
stated = next(r for r in rows if r[0] == "**mean rank**")
sets = [r for r in rows if r is not stated]
aubc = np.array([[float(c.strip("*")) for c in r[1:]] for r in sets])
stated_mean = np.array([float(c) for c in stated[1:]])
print(f"{len(sets)} data sets x {len(strategies)} strategies, from {REPORT.name}")

# %%
# Ranks per data set (1 = best AUBC, ties share), recomputed from the rounded table.
ranks = np.vstack([rankdata(-row, method="average") for row in aubc])
recomputed = ranks.mean(axis=0)
print(
    "largest gap between stated and recomputed mean rank:",
    f"{np.abs(recomputed - stated_mean).max():.2f} (rounding to 0.1 point makes ties)",
)
p, cd = friedman_nemenyi(ranks)  # the critical difference depends on the table's shape only
stated_p = re.search(r"Friedman p = ([0-9.e+-]+);", text).group(1)
stated_cd = float(re.search(r"critical difference at α = 0\.05: ([0-9.]+)", text).group(1))
print(f"Friedman p = {p:.1e} from the rounded table ({stated_p} stated, from the exact AUBCs)")
print(f"critical difference {cd:.2f} ({stated_cd:.2f} stated)")
for i in np.argsort(stated_mean, kind="stable")[:5]:
    print(f"  {strategies[i]:>18}: mean rank {stated_mean[i]:.2f}")

# %%
# ``plot_cd`` writes a PNG, as ``ralif report`` does; it is shown here as an image.
with tempfile.TemporaryDirectory() as tmp:
    png = Path(tmp) / "cd-tune.png"
    plot_cd(stated_mean, strategies, cd, f"Mean rank over {len(sets)} data sets (tune half)", png)
    image = plt.imread(png)
height, width = image.shape[:2]
fig = plt.figure(figsize=(width / 150, height / 150), dpi=150)
ax = fig.add_axes((0, 0, 1, 1))
ax.imshow(image)
ax.set_axis_off()
plt.show()
