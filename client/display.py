"""Rich terminal views of jobs: live progress while following, a readable table of a result."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from client import models as wire
from client.api import MinerClient
from schema import events as ev
from schema.research import research_lines

METRIC_FORMATS = {
    "net_pnl": "{:+,.2f}", "return_pct": "{:+.2f} %", "trades": "{:.0f}", "win_rate": "{:.1%}",
    "max_drawdown": "{:.1%}", "sharpe": "{:+.2f}", "sortino": "{:+.2f}", "profit_factor": "{:.2f}",
    "exposure": "{:.1%}", "avg_trade_return": "{:+.3%}", "trade_t_stat": "{:+.2f}",
    "trade_z": "{:+.2f}", "bar_z": "{:+.2f}",
}
PER_TRADE = ("win_rate", "profit_factor", "avg_trade_return", "trade_t_stat", "trade_z")  # none without a trade


def _rate(genomes: float, seconds: float) -> str:
    """Evaluations per second over a span of events' times (the service's clock, so a replayed log reads the same
    as a live one); '-' when no time passed."""
    return f"{genomes / seconds:,.0f} evals/s" if seconds > 0 else "- evals/s"


def follow(client: MinerClient, job_id: str, console: Console | None = None, since: int = 0) -> wire.JobStatus | None:
    """Show a job's progress live until it ends; returns the status it ended in (None: the stream ended first)."""
    console = console or Console()
    # the service's time of the first generation's start seen: the rate is the job's average since, as the
    # generations of an epoch (up to a migration) are told together when its last island is back
    mining_started: float | None = None
    evaluations = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        generations = progress.add_task("generations", total=None, info="")
        genomes = progress.add_task("genomes", total=None, info="")
        validation = progress.add_task("validation", total=None, info="", visible=False)
        for event in client.events(job_id, since=since):
            data = event.data
            if isinstance(data, ev.JobStarted):
                progress.update(generations, total=data.generations)
                progress.update(genomes, total=data.population)
                console.print(f"job {job_id}: {data.population} genomes x {data.generations} generations, "
                              f"{data.train_bars} training bars, evaluator {data.evaluator_version}",
                              soft_wrap=True)
            elif isinstance(data, ev.GenerationStarted):
                progress.update(genomes, completed=0)
                mining_started = event.time if mining_started is None else mining_started
            elif isinstance(data, ev.BatchEvaluated):
                progress.update(genomes, completed=data.evaluated, total=data.total)
            elif isinstance(data, ev.GenerationBest):
                evaluations += progress.tasks[genomes].total or 0
                rate = _rate(evaluations, event.time - (event.time if mining_started is None else mining_started))
                m = data.metrics  # the generation's best, its training folds together (each from the same cash)
                line = (f"this generation's best {data.fitness:+.3f} ({m['trades']:.0f} trades, "
                        f"{m['net_pnl']:+,.2f} USD over the folds)  best so far {data.best_fitness_so_far:+.3f}")
                progress.update(generations, completed=data.generation + 1, info=line)
                progress.update(genomes, info=rate)
                if not console.is_terminal:  # piped or logged: one plain line per generation instead of bars
                    console.print(f"generation {data.generation + 1}/{progress.tasks[generations].total}  "
                                  f"{evaluations:,.0f} evaluations  {rate}  {line}", soft_wrap=True)
            elif isinstance(data, ev.ValidationStarted):
                progress.update(validation, total=data.searches, visible=True)
                console.print(f"validating: the random baseline and the same search on {data.permutations} "
                              "shuffled copies of the training data", soft_wrap=True)
            elif isinstance(data, ev.ValidationSearchFinished):
                what = "random baseline" if data.kind == "random" else f"shuffled copy {data.index}"
                info = f"{what}: best fitness {data.best_fitness:+.3f}"
                progress.update(validation, completed=data.done, total=data.total, info=info)
                if not console.is_terminal:
                    console.print(f"validation {data.done}/{data.total}  {info}", soft_wrap=True)
            elif isinstance(data, ev.Failed):
                console.print(f"[red]job {job_id} failed: {data.error}")
            elif isinstance(data, ev.Cancelled):
                console.print(f"[yellow]job {job_id} cancelled at generation {data.generation}")
            elif isinstance(data, ev.Paused):
                console.print(f"[yellow]job {job_id} paused: {data.reason}", soft_wrap=True)
            elif isinstance(data, ev.Resumed):
                console.print(f"job {job_id} resumed")
            if event.type in wire.ENDED:
                return wire.JobStatus(event.type)
    return None


def _metric(metrics: dict[str, float] | None, name: str) -> str:
    """One metric of one side, '-' where it does not exist: no holdout, or a statistic of trades without a trade."""
    metrics = metrics or {}
    if name not in metrics or (name in PER_TRADE and not metrics.get("trades")):
        return "-"
    return METRIC_FORMATS[name].format(metrics[name])


def metrics_table(title: str, columns: dict[str, dict[str, float] | None]) -> Table:
    """Every metric, formatted as `miner result` shows it, one column per backtest ('-' where one has none)."""
    table = Table(title=title)
    table.add_column("metric")
    for column in columns:
        table.add_column(column, justify="right")
    for name in METRIC_FORMATS:
        table.add_row(name, *(_metric(metrics, name) for metrics in columns.values()))
    return table


def result_table(result: wire.JobResult) -> Table:
    return metrics_table(f"best strategy of job {result.job_id}",
                         {"train": result.train.metrics, "holdout": result.holdout.metrics if result.holdout else None})


def backtest_table(backtest: wire.BacktestResult) -> Table:
    """A re-test's metrics (``miner backtest``), in the same rows and formats as a result's."""
    return metrics_table(f"backtest on {backtest.dataset}", {"backtest": backtest.metrics})


def hall_of_fame_table(result: wire.JobResult, top: int) -> Table:
    """The job's ``top`` best distinct strategies, ranked on training fitness; the holdout is shown beside."""
    table = Table(title=f"hall of fame of job {result.job_id} (ranked on training fitness)")
    for name in ("rank", "fitness", "train return", "train trades", "holdout return", "holdout trades"):
        table.add_column(name, justify="right")
    table.add_column("strategy", overflow="fold")
    for rank, entry in enumerate(result.hall_of_fame[:top], 1):
        table.add_row(str(rank), f"{entry.fitness:+.4f}", _metric(entry.train_metrics, "return_pct"),
                      _metric(entry.train_metrics, "trades"), _metric(entry.holdout_metrics, "return_pct"),
                      _metric(entry.holdout_metrics, "trades"), entry.strategy)
    return table


def print_result(result: wire.JobResult, console: Console | None = None, top: int = 0) -> None:
    """The verdict first (is it an edge or luck?), then the strategy, its metrics, folds and baselines; then the
    ``top`` entries of the hall of fame."""
    console = console or Console()
    lines = research_lines(result.validation, result.folds, result.profitable_folds, result.baselines,
                           result.fitness)
    style = {"edge": "bold green", "no_edge": "bold red"}.get(result.validation.verdict, "bold yellow")
    console.print(lines[0], style=style, soft_wrap=True, markup=False)
    console.print(f"[bold]best strategy:[/bold] {result.strategy}", soft_wrap=True)  # one line: easy to grep
    console.print(result_table(result))
    for line in lines[1:]:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    console.print(f"fitness {result.fitness:+.4f}  evaluator {result.evaluator_version}  seed {result.seed}  "
                  f"data {result.dataset} ({result.data_fingerprint})", soft_wrap=True)
    if top:
        console.print(hall_of_fame_table(result, top))
