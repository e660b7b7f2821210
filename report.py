"""The trade-off report: Hydra run directories -> results.csv, the paper's figures, Pareto frontiers, the most
accurate configuration within a budget, bigger model vs longer input -> report.md and report.html.

    python report.py outputs/sweeps/demo
    python report.py outputs/ budget.kwh=0.5 budget.min_inference_samples_per_s=2 out=docs/report
    python report.py --help          # every key, from conf/report.yaml

Directories may be sweeps, single runs or all of outputs/ (positional, or `dirs=[...]`); `key=value` overrides
conf/report.yaml. A Hydra app: `--cfg job`, `--shell-completion` work as in train.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from study.errors import StudyError

ARGV: list[str] = []  # the command line as the user typed it (report.md quotes it)


def report(cfg: DictConfig) -> int:
    from report import config

    # 1. what to read, where to write, what to ask (checked before anything heavy is imported)
    dirs, cfg = config.from_hydra(cfg)
    from report import budgets, collect, configurations, figures, frontier, paths, projection, render
    out = Path(cfg.out)
    costs = dict(cfg.costs)

    # 2. every train run under the directories -> one tidy table (failed and incomplete runs included), each run's
    #    projected full fine-tune when project.* asks for one
    runs = collect.collect(dirs, cfg.accuracy, costs["energy"], exclude=[out])
    if runs.table.empty:
        raise StudyError(f"no train run found under {', '.join(map(str, dirs))} (a run directory holds metrics.json or .hydra/ from train.py)")
    for note in runs.notes:
        print(f"note: {note}", file=sys.stderr)
    runs.table = projection.project(runs.table, cfg.project.samples, cfg.project.epochs)
    out.mkdir(parents=True, exist_ok=True)
    runs.table.to_csv(out / "results.csv", index=False)
    runs.costs.to_csv(out / "costs.csv", index=False)

    # 3. repeats -> configurations (mean, spread), within experiments (dataset and corpus, budget, implementation, hardware)
    confs = configurations.aggregate(runs.table, cfg.statuses, cfg.pool_hardware)
    confs.to_csv(out / "configurations.csv", index=False)
    grouped = configurations.assign_groups(frontier.usable(runs.table, cfg.statuses), cfg.pool_hardware)  # usable runs, named by experiment
    separate = configurations.separating(grouped)

    # 4. the paper's figures, per experiment
    limits = {k: v for k, v in dict(cfg.budget).items() if k != "basis"}
    drawn = figures.draw(confs, out / "figures", costs, ["ok"], cfg.figures.formats, cfg.figures.dpi, limits, cfg.budget.basis)

    # 5. the frontier, the answer within the budget (measured or projected costs), bigger model vs longer input, families
    budget_costs = dict(costs)
    if cfg.budget.basis == "projected":
        budget_costs.update(energy="projected_energy_kwh", train_time="projected_train_time_s")
    # everything that compares configurations is priced on the budget's basis: a projection compares equal
    # fine-tunes, where measured totals of runs that trained unequal numbers of samples (batch_size=auto) do not
    fronts = frontier.frontiers(confs, budget_costs)
    answers = frontier.answer(confs, limits, budget_costs)
    fitting = {a.dataset: set(a.fits) if a.limits else set() for a in answers}  # for the highlight
    steps = frontier.steps(confs, budget_costs)
    summary = frontier.comparison_summary(steps)
    fams = frontier.families(confs, budget_costs)
    both = paths.compare(confs, budget_costs)  # stock against the fast path, where a configuration ran on both
    pairs = budgets.compare(confs, budget_costs)  # under a memory cap against the whole card, likewise
    best = {a.dataset: (a.best["label"] if a.best is not None else None) for a in answers}
    steps.to_csv(out / "steps.csv", index=False)
    fams.to_csv(out / "families.csv", index=False)
    both.to_csv(out / "paths.csv", index=False)
    pairs.to_csv(out / "budgets.csv", index=False)

    # 6. report.md and report.html
    doc = render.build(runs, confs, drawn, fronts, answers, steps, summary, fams, cfg, out, ARGV, time.strftime("%Y-%m-%d %H:%M"),
                       separate, fitting, (both, paths.summary(both, confs, budget_costs)), grouped,
                       (pairs, budgets.summary(pairs, best)))
    md, page = render.write(doc, out)

    for a in answers:
        print(a.sentence)
        if a.beyond:
            print(a.beyond)
    print(f"{len(runs.table)} runs -> {out / 'results.csv'}, {md}, {page}")
    return 0


@hydra.main(config_path="conf", config_name="report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        code = report(cfg)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    from report import config

    ARGV[:] = sys.argv[1:]
    try:
        sys.argv[1:] = config.hydra_argv(ARGV)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    OmegaConf.register_new_resolver("report_help", config.help_text)
    main()
