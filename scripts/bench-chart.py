#!/usr/bin/env python3
"""Draws the latency distributions of `make bench` from its report.json into a PNG.

    bench-chart.py target/bench/report.json target/bench/latency.png

Latency is drawn against the percentile on a tail-stretching axis (50 %, 90 %, 99 %, 99.9 %), as
HdrHistogram plots do, so that the tail the targets speak of is as wide as the median.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

PERCENTILE_TICKS = [0.5, 0.9, 0.99, 0.999]
RATE_COLOURS = {50: "tab:green", 200: "tab:orange", 1000: "tab:red"}
QUEUE_STYLES = {"instant": "-", "moto": ":"}


def tail_axis(samples):
    """x = 1 / (1 - q) for each sorted sample: 2 at the median, 100 at p99."""
    n = len(samples)
    return [1.0 / (1.0 - (i + 0.5) / n) for i in range(n)]


def percentile_axis(ax):
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - q) for q in PERCENTILE_TICKS]))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"p{100 * (1 - 1 / x):g}")
    )
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda y, _: f"{y:g}" if f"{y:g}"[0] in "25" else "")
    )
    ax.grid(True, which="both", alpha=0.2)


def ingress(ax, report, function, target_ms):
    for run_set in report["ingress"]["functions"]:
        if run_set["name"] != function:
            continue
        for run in run_set["fixed_rates"]:
            samples = run["latency"]["samples_ms"]
            if not samples:
                continue
            rate = round(run["rate_per_s"])
            ax.plot(
                tail_axis(samples),
                samples,
                QUEUE_STYLES.get(run_set["queue"], "-"),
                color=RATE_COLOURS.get(rate, "tab:blue"),
                label=f'{rate}/s, {run_set["queue"]} SQS',
            )
    if target_ms:
        ax.axhline(target_ms, color="black", linewidth=0.8, linestyle="--")
        ax.text(1.05, target_ms * 1.08, f"target p99 ≤ {target_ms:g} ms", fontsize=8)
    ax.axhline(50, color="grey", linewidth=0.6, linestyle="-.")
    ax.text(0.99, 50 * 1.08, "50 ms: the step search's limit", fontsize=8, color="grey",
            horizontalalignment="right", transform=ax.get_yaxis_transform())
    ax.set_title(f"{function}: scheduled send → answer")
    ax.set_ylabel("latency (ms)")
    percentile_axis(ax)
    ax.legend(fontsize=7, loc="upper left")


def worker(ax, report):
    w = report["worker"]
    for label, dist, style in [
        ("turn: our own time", w["turn"]["own"], "-"),
        ("turn: wall", w["turn"]["wall"], "--"),
        ("turn: in the store (proxy pass)", w["db_round_trips"]["store_per_turn"], "-."),
        ("start: our own time", w["start"]["own"], "-"),
        ("start: wall", w["start"]["wall"], "--"),
    ]:
        samples = dist["samples_ms"]
        if samples:
            ax.plot(tail_axis(samples), samples, style, label=label)
    target = report["targets"]["own_time_per_turn_ms"]
    ax.axhline(target, color="black", linewidth=0.8, linestyle="--")
    ax.text(1.05, target * 1.08, f"target ≤ {target:g} ms of our own", fontsize=8)
    n8n = report["n8n"]["time_per_turn_ms"]
    ax.axhline(n8n, color="tab:purple", linewidth=0.8, linestyle=":")
    ax.text(1.05, n8n * 0.88, f"n8n {n8n:g} ms per turn", fontsize=8, color="tab:purple",
            verticalalignment="top")
    ax.set_ylim(top=n8n * 1.6)
    ax.set_title("conversation-worker: per job, stand-ins answering at once")
    ax.set_ylabel("time (ms)")
    percentile_axis(ax)
    ax.legend(fontsize=7, loc="lower right")


def cold_starts(ax, report):
    functions = report["cold_starts"]["functions"]
    names = [f["name"] for f in functions]
    xs = range(len(names))
    width = 0.38
    for offset, key, label in [(-width / 2, "init", "INIT (exec → first next)"),
                               (width / 2, "first_answer", "exec → first answer")]:
        medians = [f[key]["p50_ms"] for f in functions]
        p90s = [f[key]["p90_ms"] for f in functions]
        ax.bar(
            [x + offset for x in xs],
            medians,
            width,
            yerr=[[0] * len(medians), [p - m for p, m in zip(p90s, medians)]],
            capsize=3,
            label=label,
        )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("ms (median, whisker to p90)")
    ax.set_title(f'cold start, {report["cold_starts"]["starts_per_function"]} starts each')
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def main(report_path, png_path):
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    ingress(axes[0][0], report, "whatsapp-inbound", report["targets"]["webhook_ack_p99_ms"])
    ingress(axes[0][1], report, "form-intake", None)
    worker(axes[1][0], report)
    cold_starts(axes[1][1], report)
    m = report["machine"]
    fig.suptitle(
        f'make bench, {m["date"]}: {m["cores"]} cores, {m["cpu"]}, '
        f'{report["ingress"]["instances"]} instances per ingress function',
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"bench: latency chart in {png_path}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
