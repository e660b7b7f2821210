"""The trade-off report: Hydra run directories -> results.csv, configurations.csv, the paper's figures, Pareto
frontiers, a budget answer, the bigger-model vs longer-input and LED vs BigBird comparisons -> report.md and report.html.

    collect.py         run directories -> the tidy table (one row per train run, joined with its infer record)
    steady.py          steady-state rates and one-time (warm-up) costs, derived for records that predate them
    projection.py      a full fine-tune's cost from a short run: one-time cost + samples x steady per-sample cost
    configurations.py  runs -> experiments (groups) -> configurations: seeds aggregated to n, mean and spread
    figures.py         configurations -> the paper's Figures 1-6 per experiment (PNG, SVG), and what each plotted
    frontier.py        Pareto sets, the budget answer, bigger model vs longer input, LED vs BigBird
    render.py          all of it -> report.md and report.html (figures embedded, Styler tables)
    config.py          the command line: directories and conf/report.yaml overrides, checked
"""
