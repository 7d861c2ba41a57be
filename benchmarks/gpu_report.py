"""Ratios, targets and the markdown table of benchmarks/gpu_bench.py's results (pure functions of the
rows it saved: the report can be rebuilt without re-running anything).

Targets (issue 26), per shape and objective f: ours' time <= 1.2x and peak memory <= 1.5x those of
cut-cross-entropy's NLL on the same shape (CCE computes NLL only; it is the reference for every f).
"""

from __future__ import annotations

TIME_TARGET = 1.2      # ours / CCE time
MEMORY_TARGET = 1.5    # ours / CCE peak memory


def _ok(row):
    return row is not None and "error" not in row


def _ratio(a, b, key):
    if not (_ok(a) and _ok(b)) or not b[key]:
        return None
    return a[key] / b[key]


def summarise(data):
    """{"fused_summary": one row per (shape, spec) with ours' ratios and the target verdicts,
    "finetune_best": the best repeat per section with its tokens/s ratio to HF Trainer}."""
    rows = data["fused"]
    find = {(r.get("shape"), r.get("spec"), r.get("method")): r for r in rows}
    summary = []
    for (shape, spec, method), ours in find.items():
        if method != "ours":
            continue
        naive, cce = find.get((shape, spec, "naive")), find.get((shape, "nll", "cce"))
        s = {"shape": shape, "spec": spec,
             "time_vs_naive": _ratio(ours, naive, "seconds"),
             "mem_vs_naive": _ratio(ours, naive, "peak_mib"),
             "time_vs_cce": _ratio(ours, cce, "seconds"),
             "mem_vs_cce": _ratio(ours, cce, "peak_mib")}
        for base in ("liger", "trl"):
            ref = find.get((shape, spec if base == "trl" else "nll", base))
            s[f"time_vs_{base}"] = _ratio(ours, ref, "seconds")
            s[f"mem_vs_{base}"] = _ratio(ours, ref, "peak_mib")
        s["time_target"] = _verdict(s["time_vs_cce"], TIME_TARGET, cce)
        s["memory_target"] = _verdict(s["mem_vs_cce"], MEMORY_TARGET, cce)
        summary.append(s)
    from gpu_finetune import best

    tops = best(data["finetune"])
    hf = tops.get("hf-trainer")
    for row in tops.values():
        row["tokens_vs_hf"] = None if not (_ok(row) and _ok(hf)) else \
            row["tokens_per_s"] / hf["tokens_per_s"]
    return {"fused_summary": summary, "finetune_best": list(tops.values()),
            "targets_met": all(s["time_target"] == "pass" and s["memory_target"] == "pass"
                               for s in summary) and bool(summary)}


def _verdict(ratio, target, cce):
    if ratio is None:
        return "n/a (" + (cce["error"] if cce is not None and "error" in cce else "no CCE row") + ")"
    return "pass" if ratio <= target else "fail"


def _f(x, fmt):
    return "–" if x is None else format(x, fmt)


def markdown(data):
    env, cfg = data["env"], data["config"]
    lines = [f"# GPU benchmark{' (CPU dry run)' if cfg['dry_run'] else ''}", "",
             f"{env['date']}; device {env['gpu'] or 'cpu'}; dtype {cfg['dtype']}; "
             + ", ".join(f"{k} {env[k]}" for k in ("torch", "transformers", "trl",
                                                    "cut-cross-entropy", "liger-kernel", "triton")),
             "", "## Fused linear + f(p) loss (forward + backward)", "",
             f"Time: median of {cfg['reps']} after a warm-up; peak: memory beyond inputs and "
             "weights; errors: relative to naive (full logits) on the same inputs. cce and liger "
             "compute NLL only (run under nll).", "",
             "| shape (N, H, V) | f | method | ms | peak MiB | time / naive | mem / naive | "
             "loss err | grad err |", "|---|---|---|---|---|---|---|---|---|"]
    naive = {(r.get("shape"), r.get("spec")): r for r in data["fused"] if r.get("method") == "naive"}
    for r in data["fused"]:
        head = f"| {r.get('shape')} ({r.get('N')}, {r.get('H')}, {r.get('V')}) | {r.get('spec')} | " \
               f"{r.get('method')} |"
        if "error" in r:
            lines.append(f"{head} {r['error'].replace('|', '/')} | | | | | |")
            continue
        ref = naive.get((r["shape"], r["spec"]))
        lines.append(f"{head} {r['seconds'] * 1e3:.1f} | {r['peak_mib']:.0f} | "
                     f"{_f(_ratio(r, ref, 'seconds'), '.2f')} | {_f(_ratio(r, ref, 'peak_mib'), '.3f')}"
                     f" | {_f(r.get('loss_rel_err'), '.1e')} | {_f(r.get('grad_rel_err'), '.1e')} |")
    lines += ["", f"## Targets: ours <= {TIME_TARGET}x CCE time, <= {MEMORY_TARGET}x CCE memory, "
              "every f", "",
              "| shape | f | ours / CCE time | time target | ours / CCE mem | memory target | "
              "ours / Liger time, mem | ours / TRL time, mem | ours / naive time, mem |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in data["fused_summary"]:
        pair = lambda b: f"{_f(s[f'time_vs_{b}'], '.2f')}, {_f(s[f'mem_vs_{b}'], '.2f')}"  # noqa: E731
        lines.append(f"| {s['shape']} | {s['spec']} | {_f(s['time_vs_cce'], '.2f')} | "
                     f"{s['time_target']} | {_f(s['mem_vs_cce'], '.2f')} | {s['memory_target']} | "
                     f"{pair('liger')} | {pair('trl')} | {pair('naive')} |")
    lines += ["", f"All targets met: **{'yes' if data['targets_met'] else 'no'}**", "",
              f"## Runner vs HF Trainer (model {cfg['model']}, best of {cfg['repeats']})", "",
              "| section | params (M) | tokens/s | / HF Trainer | peak GiB | final loss |",
              "|---|---|---|---|---|---|"]
    for r in data["finetune_best"]:
        if "error" in r:
            lines.append(f"| {r['section']} | {r['error'].replace('|', '/')} | | | | |")
            continue
        lines.append(f"| {r['section']} | {r['params_M']:.1f} | {r['tokens_per_s']:.0f} | "
                     f"{_f(r['tokens_vs_hf'], '.2f')} | {_f(r['peak_mem_GiB'], '.2f')} | "
                     f"{r['final_loss']:.4f} |")
    if "wall_s" in data:
        lines += ["", f"Wall time: {data['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"
