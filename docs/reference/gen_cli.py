"""Write docs/reference/cli.md from the commands' own --help (run from the repo root)."""
import subprocess, sys, os
env = dict(os.environ, COLUMNS="100")
py = ".venv/bin/python"
cmds = [
 ("suprem_synth", []), ("suprem_plan_and_preprocess", []), ("suprem_train", []), ("suprem_finetune", []),
 ("suprem_predict", []), ("suprem_evaluate", []), ("suprem_demo", []),
 ("suprem_convert", [[], ["merge"]]),
 ("suprem_zoo", [[], ["list"], ["info"], ["import"], ["export"]]),
 ("suprem_experiment", [[], ["run"], ["report"], ["list"]]),
 ("suprem_review", [[], ["score"], ["import"]]),
 ("suprem_classify", [[], ["train"], ["predict"], ["from-probabilities"], ["make-phantoms"]]),
]
mods = [("python -m suprem_nnunet.benchmarks", ["-m", "suprem_nnunet.benchmarks"], [[], ["train"], ["predict"], ["preprocess"], ["partial-labels"], ["scale"]]),
        ("python -m suprem_nnunet.benchmarks", ["-m", "suprem_nnunet.benchmarks"], [["gpu"], ["roi"]]),
        ("python -m suprem_nnunet.benchmarks", ["-m", "suprem_nnunet.benchmarks"], [["flywheel"]])]
out = ["# Command reference", "",
       "Generated from each command's own `--help` (`.venv/bin/<command> [subcommand] --help`, 100 columns);",
       "regenerate it with `.venv/bin/python docs/reference/gen_cli.py` after changing a parser.",
       "Every command also takes `--version`, `-v/--verbose` and `--debug` (full traceback on an error;",
       "also `SUPREM_DEBUG=1`).", ""]
def run(argv):
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    return (r.stdout + r.stderr).rstrip()
toc = []
body = []
for name, subs in cmds:
    toc.append(f"- [`{name}`](#{name})")
    body += [f"## {name}", ""]
    for sub in (subs or [[]]):
        if sub:
            body += [f"### {name} {' '.join(sub)}", ""]
        body += ["```text", run([f".venv/bin/{name}", *sub, "--help"]), "```", ""]
for title, argv, subs in mods:
    anchor = title.replace(" ", "-").replace(".", "").lower()
    toc.append(f"- [`{title}`](#{anchor})")
    body += [f"## {title}", ""]
    for sub in subs:
        if sub:
            body += [f"### {title} {' '.join(sub)}", ""]
        body += ["```text", run([py, *argv, *sub, "--help"]), "```", ""]
open("docs/reference/cli.md", "w").write("\n".join(out + toc + [""] + body))
