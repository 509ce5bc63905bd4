"""The Markdown results file (docs/results.md): one generated section per sweep, nothing typed by hand inside it.

`python -m minimal.sweep … --report docs/results.md` calls `write_report_section`, which renders the sweep's
command, its training runs (epochs, test accuracy, wall time from each meta.json), and every evaluation (its
command, wall time, table from the evaluation's CSV, and figure, copied next to the report) between two marker
lines. Running the sweep again replaces its own section and keeps everything else in the file.
"""
import csv
import datetime
import os
import shlex
import shutil

from .io import atomic_write_bytes, markdown_table, read_json

HEADER = """# Results

Each section below is written by the command it names (`python -m minimal.sweep … --report docs/results.md`)
from the JSON/CSV files of its runs; rerunning that command regenerates the section. Text outside the sections
is commentary.
"""


def begin_marker(root):
    return f"<!-- begin generated section: {root} -->"


def end_marker(root):
    return f"<!-- end generated section: {root} -->"


def training_rows(folders):
    rows = [["run", "method", "seed", "epochs", "steps", "best val acc (%)", "test acc (%)", "train wall time"]]
    for folder in folders:
        meta = read_json(os.path.join(folder, "meta.json"), {})
        rows.append([f"`{folder}`", meta.get("method", "?"), str(meta.get("seed", "?")),
                     str(len(meta.get("history", []))), str(meta.get("steps", "?")),
                     f"{100 * meta['best_val_acc']:.2f}" if "best_val_acc" in meta else "?",
                     f"{100 * meta['test_acc']:.2f}" if "test_acc" in meta else "?",
                     format_seconds(meta.get("train_seconds"))])
    return rows


def format_seconds(seconds):
    if seconds is None:
        return "?"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def read_table(folder, name):
    """The evaluation's table as Markdown: <name>.md as the evaluation wrote it (its printed table), else the CSV
    (evaluations written before the .md existed)."""
    markdown = os.path.join(folder, name + ".md")
    if os.path.isfile(markdown):
        with open(markdown, encoding="utf-8") as f:
            return f.read().rstrip("\n")
    with open(os.path.join(folder, name + ".csv"), newline="", encoding="utf-8") as f:
        return markdown_table(list(csv.reader(f)))


def evaluation_block(root, evaluation, command, figures_folder, report_folder):
    """One evaluation: its command, wall time, table and figure (copied into figures_folder)."""
    name, (subcommand, *_) = evaluation
    folder = os.path.join(root, name)
    table = read_table(folder, subcommand)
    wall = read_json(os.path.join(folder, "wall_seconds.json"), {}).get("seconds")
    record = read_json(os.path.join(folder, subcommand + ".json"), {})
    timing = f"wall time {format_seconds(wall)}"
    if "cell_seconds" in record:     # mismatch keeps finished cells: some may have been computed by earlier runs
        timing += f"; the times of its cells, one process each, add up to {format_seconds(record['cell_seconds'])}"
    computed = record.get("cells_computed_here")       # attack, landscape: cells kept from earlier runs cost nothing
    if computed is not None and computed < record["cells"]:
        timing += (f"; this run computed {computed} of its {record['cells']} cells, the others were kept from "
                   f"earlier runs")
    figure = f" ({record['figure']})" if record.get("figure") else ""
    lines = [f"#### {name}: `{subcommand}`{figure}", "",
             f"`{shlex.join(command)}` — {timing}", "", table, ""]
    if os.path.isfile(os.path.join(folder, subcommand + "_u_test.csv")):
        lines += ["Mann–Whitney U test of the draws, two-sided p-values:", "",
                  read_table(folder, subcommand + "_u_test"), ""]
    png = os.path.join(folder, subcommand + ".png")
    if os.path.isfile(png):
        os.makedirs(figures_folder, exist_ok=True)
        target = os.path.join(figures_folder, f"{os.path.basename(os.path.normpath(root))}-{name}.png")
        shutil.copyfile(png, target)
        lines += [f"![{name}]({os.path.relpath(target, report_folder)})", ""]
    return lines


def section_text(root, sweep_argv, evaluations, commands, folders, report_folder):
    lines = [begin_marker(root), f"### `{root}`", "",
             f"Generated {datetime.date.today().isoformat()} on a machine with {os.cpu_count()} cores by", "",
             f"`python -m minimal.sweep {shlex.join(sweep_argv)}`", "",
             "Training (wall time of each run; runs went one at a time unless the sweep says --jobs or "
             "--scheduler):", "",
             markdown_table(training_rows(folders)), ""]
    for evaluation, command in zip(evaluations, commands):
        lines += evaluation_block(root, evaluation, command, os.path.join(report_folder, "figures"), report_folder)
    return "\n".join(lines + [end_marker(root)]) + "\n"


def replace_section(text, root, section):
    """text with the section of `root` replaced by `section` (or appended if it has none)."""
    begin, end = begin_marker(root), end_marker(root)
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        return before + section + ("\n" + after if after else "")
    return text.rstrip("\n") + "\n\n" + section


def write_report_section(report_path, root, sweep_argv, evaluations, commands, folders):
    """Write (or rewrite) the section of this sweep in the Markdown file report_path, atomically.
    evaluations: the sweep's (name, [subcommand, options…]); commands: the command line each one ran."""
    report_folder = os.path.dirname(os.path.abspath(report_path))
    commands = [["python", *command[1:]] for command in commands]   # not this machine's interpreter path
    section = section_text(root, sweep_argv, evaluations, commands, folders, report_folder)
    text = open(report_path).read() if os.path.isfile(report_path) else HEADER
    atomic_write_bytes(report_path, replace_section(text, root, section).encode("utf-8"))
