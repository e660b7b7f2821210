"""The trade-off report: Hydra run directories -> results.csv, the paper's figures, Pareto frontiers, a budget
answer and the bigger-model vs longer-input comparison -> report.md and report.html.

    collect.py   run directories -> the tidy table (one row per train run, joined with its infer record)
    figures.py   the table -> the paper's Figures 1-6 per dataset (PNG, SVG) and what each one plotted
    frontier.py  Pareto sets, the budget answer and the bigger-model vs longer-input steps
    render.py    all of it -> report.md and report.html (figures embedded)
    config.py    the command line: directories and conf/report.yaml overrides, checked
"""
