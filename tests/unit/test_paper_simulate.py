"""The paper's pool simulation (bench/paper/simulate.py) on a small synthetic score table.

Proves: the table is read through build_table (rows counted); a pool of one member that sees every
row reveals exactly what a solo miner of the same compute reveals, round after round, and with
little compute wins about half the rounds against it; partitioned search has no more duplicate
evaluations than independent search of the same total compute (none while no subspace is
exhausted); members evaluate exactly N c rows a round, less the slots of members whose subspaces
have no known row; every
coinbase split sums to the reward, members get the reward less the pool's fee in the rounds the
pool wins and nothing in the others; without churn every planned subspace is completed, nothing
moves and, with the backup rule off, no backup is assigned, while churn makes subspaces incomplete
and moves them; a quick run writes the JSON, the markdown tables and the plots; the same seed
gives the same numbers and another seed other numbers; within a task of several rounds a party
keeps what it found and never draws a row twice; a pool with keys enough for everything it
evaluated reveals its best test score; evolution searches through pool.search's class, inside
each member's region, and keeps what it found; the real-network experiment reads a run's file and
compares directions; the report states a verdict per claim and refuses a missing or broken
results folder with a stable reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import random
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAPER = ROOT / "bench" / "paper"
sys.path.insert(0, str(PAPER))

import build_table as bt  # noqa: E402
import simulate as sim  # noqa: E402

from consensus.engines.ponas.space import get_space  # noqa: E402

SPACE = get_space("nb201")
ROWS = 300


def write_table(path: pathlib.Path, rows: int = ROWS, seed: int = 7) -> pathlib.Path:
    """A uniform random sample of the space in the real format; the ten best validation
    counts are distinct (so the best 8 by validation do not depend on the order of discovery)."""
    rng = random.Random(seed)
    indices = rng.sample(range(SPACE.size), rows)
    best = set(rng.sample(indices, 10))
    table = {}
    top = iter(range(286, 296))
    for i in sorted(indices):
        v = next(top) if i in best else rng.randint(200, 285)
        table[i] = bt.Row(i, SPACE.encode(i), v, 297, rng.randint(440, 500), 500, 1.0)
    bt.write_table(path, table, [f"rows: {rows} of {SPACE.size}; synthetic"])
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> sim.Table:
    return sim.load_table(write_table(tmp_path_factory.mktemp("table") / "t.csv.gz"))


def test_table_is_read(table: sim.Table) -> None:
    assert table.rows == ROWS
    assert list(table.index) == sorted(table.index)
    assert table.val_total == 297 and table.test_total == 500
    lo, hi = table.span(0, SPACE.size)
    assert (lo, hi) == (0, ROWS)
    assert sim.auto_compute(2561) == 3 and sim.auto_compute(SPACE.size) == 20 and sim.auto_compute(10) == 1


def test_setup_comes_from_the_project(table: sim.Table) -> None:
    s = sim.make_setup(table)
    assert (s.commit_window, s.round_seconds, s.commit_k) == (45.0, 60.0, 8)
    assert (s.fee_ppm, s.finder_bonus_ppm, s.window, s.window_rounds, s.share_weight) == (10_000, 5_000, None, 3, 20)
    assert (s.heartbeat, s.heartbeat_timeout, s.std_threshold, s.top_k, s.history) == (2.0, 10.0, 0.25, 3, 8)
    assert s.reward == 50 * 10**8


def test_pool_of_one_that_sees_everything_reveals_what_a_solo_miner_reveals(table: sim.Table) -> None:
    # compute enough to exhaust every subspace and the whole table: both commit the same best 8
    s = sim.make_setup(table, compute=4 * ROWS, test_noise=3.0)
    race = sim.run_race(table, s, 1, 6, seed=1)
    assert np.array_equal(race["pool_score"], race["solo_scores"][:, 0])
    assert np.all(race["pool_val"] == max(table.val))
    assert np.all(race["pool_distinct"] == ROWS) and np.all(race["union_distinct"] == ROWS)


def test_pool_of_one_is_a_solo_miner_of_the_same_compute(table: sim.Table) -> None:
    s = sim.make_setup(table, compute=3)
    race = sim.run_race(table, s, 1, 500, seed=2)
    share = float(np.mean(race["win_one"] == -1))
    assert 0.4 < share < 0.6, share
    assert abs(float(np.mean(race["pool_val"])) - float(np.mean(race["union_val"]))) < 3
    assert np.all(race["pool_evals"] == 3) and np.all(race["solo_evals"] == 3)
    assert np.array_equal(race["win_all"] == -1, race["win_one"] == -1)  # one solo miner: the same contest


def test_members_do_their_compute_and_wins_add_up(table: sim.Table) -> None:
    s = sim.make_setup(table, compute=4)
    race = sim.run_race(table, s, 8, 40, seed=3)
    assert np.all(race["pool_evals"] + race["pool_idle"] == 8 * 4)
    assert np.all(race["union_evals"] == 8 * 4)
    assert set(np.unique(race["win_all"])) <= set(range(-1, 8))
    assert set(np.unique(race["win_one"])) <= {-1, 0}
    # the pool wins against solo 0 whenever it wins against all of them
    assert np.all((race["win_all"] != -1) | (race["win_one"] == -1))


def test_partitioned_search_has_no_more_duplicates(table: sim.Table, tmp_path: pathlib.Path) -> None:
    s = sim.make_setup(table, compute=2)
    res = sim.exp_search(table, s, 8, (1, 2, 4, 16, 64), (2, 4, 8), 30, 30, 4, tmp_path)
    rows = res["compute_sweep"] + res["members_sweep"]
    for r in rows:  # the partition itself (backup rule off) never draws a row twice more often
        assert r["bare_dup"] <= r["indep_dup"] + 1e-12, r
    small = [r for r in res["compute_sweep"] if r["compute"] <= 4]
    assert all(r["bare_dup"] == 0 for r in small)  # about 9 rows a subspace: nothing exhausted
    assert any(r["indep_dup"] > 0 for r in res["compute_sweep"])
    # with backups, a backup member searches its primary's subspace again: duplicates only then
    for r in small:
        assert (r["pool_dup"] > 0) <= (r["pool_backups"] > 0)
    assert (tmp_path / "search.md").exists() and (tmp_path / "search.png").exists()


def test_every_split_sums_to_the_reward(table: sim.Table, tmp_path: pathlib.Path) -> None:
    s = sim.make_setup(table, compute=3)
    race = sim.run_race(table, s, 6, 60, seed=5, windows=((s.window, s.window_rounds), (600, 3), (10_000, 3)))
    assert race["split_ok"]
    won = race["win_all"] == -1
    assert won.any() and (~won).any()
    members_part = s.reward - s.reward * s.fee_ppm // 10**6
    for inc in race["income"].values():
        totals = inc.sum(axis=1)
        assert np.all(totals[won] == members_part)
        assert np.all(totals[~won] == 0)
        assert np.all(inc >= 0)
    res = sim.exp_income(table, s, (2, 6), 60, 5, tmp_path)
    assert res["split_sums_ok"]
    assert (tmp_path / "income.md").exists() and (tmp_path / "income.png").exists()


def test_churn_completion_and_backups(table: sim.Table) -> None:
    s = sim.make_setup(table, compute=4)
    calm = sim.run_race(table, s, 8, 40, seed=6, p_drop=0.0, std_threshold=sim.NO_BACKUP)
    assert np.all(calm["all_done"] == calm["all_subs"]) and calm["all_subs"].sum() > 0
    assert np.all(calm["hr_done"] == calm["hr_subs"]) and calm["hr_subs"].sum() > 0
    assert calm["moves"].sum() == 0 and calm["backups"].sum() == 0
    assert np.all(calm["online"] == 8)
    stormy = sim.run_race(table, s, 8, 40, seed=6, p_drop=0.3, std_threshold=sim.NO_BACKUP)
    assert stormy["moves"].sum() > 0 and stormy["takeovers"].sum() == 0
    assert stormy["all_done"].sum() < stormy["all_subs"].sum()
    assert stormy["online"].min() < 8
    backed = sim.run_race(table, s, 8, 40, seed=6, p_drop=0.3, std_threshold=0.0)
    assert backed["backups"].sum() > 0 and backed["takeovers"].sum() > 0
    # the drops are drawn independently of the pool's decisions: the same members are online
    assert np.array_equal(backed["online"], stormy["online"])


def test_sparse_table_idles_but_completes_the_plan(tmp_path: pathlib.Path) -> None:
    # 150 rows in 128 subspaces: some subspaces have no known row, some members idle a slot
    sparse = sim.load_table(write_table(tmp_path / "sparse.csv.gz", rows=150, seed=9))
    s = sim.make_setup(sparse, compute=3)
    race = sim.run_race(sparse, s, 32, 20, seed=1, std_threshold=sim.NO_BACKUP)
    assert race["pool_idle"].sum() > 0
    assert np.all(race["pool_evals"] + race["pool_idle"] == 32 * 3)
    assert np.all(race["all_done"] == race["all_subs"])


def test_quick_run_writes_everything_and_is_deterministic(table: sim.Table, tmp_path: pathlib.Path) -> None:
    s = sim.make_setup(table)
    plan = sim.make_plan(quick=True, rounds=20)
    a = sim.run_all(table, s, plan, 11, tmp_path / "a")
    for name in ("competitiveness", "income", "search", "churn", "strategy", "collaboration"):
        assert (tmp_path / "a" / f"{name}.md").read_text().startswith("# ")
        assert (tmp_path / "a" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "a" / "simulate.json").read_text())
    assert saved["table"]["rows"] == ROWS and saved["seed"] == 11
    assert [r["n"] for r in saved["results"]["competitiveness"]["rows"]] == list(plan.ns)
    assert [r["n"] for r in saved["results"]["collaboration"]["rows"]] == list(plan.collab_ns)
    # the rest twice more (collaboration's determinism: test_the_shared_search_never_evaluates_...)
    fewer = tuple(e for e in sim.EXPERIMENTS if e != "collaboration")
    b = sim.run_all(table, s, plan, 11, tmp_path / "b", experiments=fewer)
    c = sim.run_all(table, s, plan, 12, tmp_path / "c", experiments=fewer)
    del a["results"]["collaboration"]
    assert json.dumps(sim._json_safe(a["results"])) == json.dumps(sim._json_safe(b["results"]))
    assert json.dumps(sim._json_safe(a["results"])) != json.dumps(sim._json_safe(c["results"]))
    assert (tmp_path / "a" / "churn.md").read_text() == (tmp_path / "b" / "churn.md").read_text()


def test_cli_quick(tmp_path: pathlib.Path) -> None:
    path = write_table(tmp_path / "t.csv.gz", rows=120, seed=3)
    assert sim.main(["--table", str(path), "--out", str(tmp_path / "out"), "--quick", "--rounds", "8",
                     "--compute", "2", "--only", "competitiveness", "churn"]) == 0
    saved = json.loads((tmp_path / "out" / "simulate.json").read_text())
    assert saved["table"]["rows"] == 120 and saved["setup"]["compute"] == 2
    assert set(saved["results"]) == {"competitiveness", "churn"}


def test_results_carry_over_the_rounds_of_a_task(table: sim.Table) -> None:
    s = sim.make_setup(table, compute=2)
    T, rounds = 5, 20
    race = sim.run_race(table, s, 2, rounds, seed=4, task_rounds=T, std_threshold=sim.NO_BACKUP, won_once=False)
    fresh = sim.run_race(table, s, 2, rounds, seed=4, std_threshold=sim.NO_BACKUP)
    for key in ("pool_val", "union_val", "pool_oracle"):
        by_task = race[key].reshape(rounds // T, T)
        assert np.all(np.diff(by_task, axis=1) >= 0), key  # what a party found stays found (unless it won)
    assert np.any(np.diff(fresh["pool_val"]) < 0)  # a fresh search every round forgets
    assert race["union_distinct"].sum() <= race["union_evals"].sum() == 2 * 2 * rounds
    # a member or a solo miner never evaluates a row twice in a task (40 draws of 300 rows); in a
    # pool of two, a subspace the plan moves to the other member may be searched again
    one = sim.run_race(table, s, 1, rounds, seed=4, task_rounds=rounds)
    assert one["pool_distinct"].sum() == one["pool_evals"].sum() == 2 * rounds
    assert one["union_distinct"].sum() == one["union_evals"].sum() == 2 * rounds
    assert race["pool_distinct"].sum() >= race["pool_evals"].sum() - 4
    with pytest.raises(ValueError):
        sim.run_race(table, s, 1, 2, seed=4, task_rounds=0)


def test_evolution_searches_through_the_projects_strategy(table: sim.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    from pool.search import RegularizedEvolution, make_strategy

    # one evaluation: a proposal inside the region, observed with its row's validation count
    pos_of = {index: pos for pos, index in enumerate(table.index)}
    lo, hi = table.span(5000, 9000)
    region = SPACE.subspace(5000, 9000)
    evo = RegularizedEvolution(region, random.Random(3))
    got = [sim._evolve(evo, table, pos_of, random.Random(4), lo, hi - lo) for _ in range(60)]
    assert all(lo <= pos < hi for pos in got)
    assert evo.observed == 60 and all(v == table.val[pos_of[SPACE.decode(g)]] for g, v in evo.population)
    # a race: one strategy per solo miner over the space and one per member and subspace it
    # searched in the task; every slot evaluates; what a party found stays found in the task
    made: list[RegularizedEvolution] = []

    def counting(name: str, region: object, rng: random.Random) -> object:
        made.append(make_strategy(name, region, rng))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(sim, "make_strategy", counting)
    s = sim.make_setup(table, compute=3)
    race = sim.run_race(table, s, 2, 12, seed=4, task_rounds=12, strategy="evolution", won_once=False)
    assert all(isinstance(e, RegularizedEvolution) for e in made)
    whole = [e for e in made if e.region.size == SPACE.size]
    # members: one per (member, subspace) pair met in the task (the plan may hand a subspace to
    # the other member in a later round, as the manager does), at most 2 members x 8 subspaces
    assert len(whole) == 2 and 2 <= len(made) - 2 <= 2 * 2 * s.subspaces_per_member
    assert sum(e.observed for e in made) == race["pool_evals"].sum() + race["solo_evals"].sum() == 2 * 2 * 3 * 12
    assert np.all(np.diff(race["pool_val"]) >= 0) and np.all(np.isfinite(race["solo_val"]))
    with pytest.raises(ValueError):
        sim.run_race(table, s, 1, 2, seed=4, strategy="annealing")


def test_a_pool_with_enough_keys_reveals_the_best_it_evaluated(table: sim.Table) -> None:
    s = sim.make_setup(table, compute=6)  # 4 members x 6 = 24 evaluations a round, 3 keys' worth
    one_key = sim.run_race(table, s, 4, 30, seed=8, std_threshold=sim.NO_BACKUP)
    keys = sim.run_race(table, s, 4, 30, seed=8, std_threshold=sim.NO_BACKUP, pool_keys=3)
    assert np.all(keys["pool_score"] == keys["pool_oracle"])
    assert np.all(one_key["pool_score"] <= one_key["pool_oracle"])
    assert np.any(one_key["pool_score"] < one_key["pool_oracle"])  # 8 of 24 by validation miss some


def network_run(folder: pathlib.Path, winners: list[str], name: str = "run") -> pathlib.Path:
    """A real-network run file in the format of bench/paper/network/."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    blocks = [{"height": h + 1, "winner": w} for h, w in enumerate(winners)]
    path.write_text(json.dumps({
        "command": "ponas devnet up --rounds 7", "trainings_per_process": {
            "member0": 30, "member1": 30, "solo0": 30, "solo1": 30},
        "summary": {"rounds": len(winners), "blocks": blocks}}))
    return path


def test_network_experiment_compares_directions(table: sim.Table, tmp_path: pathlib.Path) -> None:
    network_run(tmp_path / "net", ["pool", "solo1", "solo1", "solo0", "pool", "solo1", "pool"])
    runs = sim.load_network_runs(tmp_path / "net")
    assert runs == [{"name": "run", "rounds": 7, "members": 2, "solos": 2, "pool_keys": 1,
                     "wins": {"pool": 3, "solo0": 1, "solo1": 3}, "trainings_per_process": 30.0}]
    network_run(tmp_path / "net", ["solo0", "pool", "pool"], name="again")
    runs = sim.load_network_runs(tmp_path / "net")
    s = sim.make_setup(table)
    res = sim.exp_network(table, s, runs, 25, 3, tmp_path, noises=(0.0,))
    assert [r["run"] for r in res["rows"]] == ["again"] * 5 + ["run"] * 5
    real, *sims = res["rows"][5:]
    assert real["model"] == "real network" and real["pool_share"] == pytest.approx(3 / 7)
    assert real["direction"] == "pool < solos" and real["direction_one"] == "pool > one solo"
    assert [r["model"] for r in sims] == ["tasks of R rounds", "fresh every round", "tasks of R rounds, evolution",
                                          "tasks of R rounds, shared search"]
    for r in sims:  # evolution and the shared search: a fifth of the simulated runs
        assert sum(r["pool_wins_hist"]) == (25 if r["model"] in sims[0]["model"] + sims[1]["model"] else 5)
        assert len(r["pool_wins_hist"]) == 8
        assert r["compute"] == max(1, round(30 / 7 * table.rows / SPACE.size))
        assert r["agrees"] == (r["direction"] == "pool < solos")
        assert 0 <= r["p_pool_at_most_real"] <= 1
    # the two runs of one setup together: 5 of 10 rounds; the simulated totals pair run j with run j
    agg_real, *agg_sims = res["aggregates"]
    assert agg_real["rounds"] == 10 and agg_real["pool_wins"] == 5 and agg_real["direction"] == "equal"
    for r in agg_sims:
        runs_of = [x for x in sims if x["model"] == r["model"]] + [
            x for x in res["rows"][:5] if x["model"] == r["model"]]
        assert r["pool_share"] == pytest.approx(sum(x["pool_share"] * x["rounds"] for x in runs_of) / 10)
        assert 0 <= r["p_pool_at_most_real"] <= 1 and r["p_pool_at_most_real"] + r["p_pool_at_least_real"] >= 1
    text = (tmp_path / "network.md").read_text()
    assert text.count("\n| run | pool keys | model |") == 1 and text.count("\n| setup | rounds | model |") == 1
    assert (tmp_path / "network.png").read_bytes()[:4] == b"\x89PNG"


def saved_rows(results: pathlib.Path, name: str) -> list[dict]:
    return json.loads((results / "simulate.json").read_text())["results"][name]["rows"]


def test_report_states_a_verdict_per_claim(table: sim.Table, tmp_path: pathlib.Path) -> None:
    import report

    network_run(tmp_path / "net", ["pool", "solo0", "solo1"])
    s = sim.make_setup(table)
    sim.run_all(table, s, sim.make_plan(quick=True, rounds=10), 5, tmp_path / "res", network=tmp_path / "net")
    page = report.build(tmp_path / "res", tmp_path)
    claims = report.verdicts(json.loads((tmp_path / "res" / "simulate.json").read_text()))
    assert len(claims) == 8 and all(v in page for _c, v, _t in [(c, v.capitalize(), t) for c, v, t in claims])
    for name in ("competitiveness", "income", "search", "churn", "network", "strategy", "collaboration"):
        assert f"](res/{name}.png)" in page
    assert "300 of 15,625" in page
    # bad inputs: a clear error with a stable reason, and nothing written
    assert report.main(["--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.md")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "simulate.json").write_text("{not json")
    with pytest.raises(report.ReportError) as e:
        report.build(tmp_path / "bad", tmp_path)
    assert e.value.reason == "bad-results"
    assert not (tmp_path / "r.md").exists()
    assert report.main(["--results", str(tmp_path / "res"), "--out", str(tmp_path / "r.md"), "--baseline", "none"]) == 0
    assert (tmp_path / "r.md").read_text() == page
    # with a baseline run: the two side by side, and the baseline's own verdicts and tables
    both = report.build(tmp_path / "res", tmp_path, tmp_path / "res")
    assert both.startswith(page.split("## Setup")[0]) and "## What changed from the digits baseline, and why" in both
    assert "## Baseline: the digits task" in both and both.count("](res/collaboration.png)") == 2
    first = next(r for r in saved_rows(tmp_path / "res", "collaboration"))
    assert "| N | the paper's pool (random search, 1 key): digits | the paper's pool (random search, 1 key): digits |" in both
    assert f"\n| {first['n']} | " in both.split("## What changed")[1].split("## Setup")[0]
    with pytest.raises(report.ReportError):
        report.build(tmp_path / "res", tmp_path, tmp_path / "nothing")
    # a pool that never won has no income CV: simulate.json holds null, and the page says where
    saved = json.loads((tmp_path / "res" / "simulate.json").read_text())
    last = saved["results"]["income"]["rows"][-1]
    last["member_cv_default"] = None
    (tmp_path / "res" / "simulate.json").write_text(json.dumps(saved))
    assert f"(none at N = {last['n']}: the pool never won)" in report.build(tmp_path / "res", tmp_path)


def test_network_run_records_a_finished_devnet(table: sim.Table, tmp_path: pathlib.Path) -> None:
    import network_run

    devnet = tmp_path / "devnet"
    (devnet / "logs").mkdir(parents=True)
    share = "ts=2026-11-24T19:58:18 level=info logger=ponas.member msg=share id=1 validation=287\n"
    (devnet / "logs" / "member0.log").write_text(share * 3 + "msg=job job=3\n")
    (devnet / "logs" / "solo0.log").write_text(share * 2 + "msg=committed\nmsg=shares x\n")
    (devnet / "logs" / "node0.log").write_text(share)
    (devnet / "summary.json").write_text(json.dumps({"rounds": 3, "blocks": [
        {"winner": "pool", "members_paid": 1}, {"winner": "solo0", "members_paid": 0},
        {"winner": "pn1hcp8a338k…", "members_paid": 1}]}))  # won under another of the pool's keys
    first = network_run.record(devnet, ["devnet", "up"], tmp_path / "net", 1, 1)
    second = network_run.record(devnet, ["devnet", "up"], tmp_path / "net", 1, 1)
    assert first != second and second.name.endswith("-2.json")  # an earlier run is never overwritten
    saved = json.loads(first.read_text())
    assert saved["trainings_per_process"] == {"member0": 3, "solo0": 2}
    runs = sim.load_network_runs(tmp_path / "net")
    assert [r["wins"] for r in runs] == [{"pool": 2, "solo0": 1}] * 2
    assert runs[0]["trainings_per_process"] == 2.5


def test_revealing_by_validation_reveals_the_best_validation_result(table: sim.Table) -> None:
    s = sim.make_setup(table, compute=60)  # 60 of 300 rows a round: mostly one of the 10 distinct best
    race = sim.run_race(table, s, 1, 30, seed=9, std_threshold=sim.NO_BACKUP, reveal_by_validation=True)
    free = sim.run_race(table, s, 1, 30, seed=9, std_threshold=sim.NO_BACKUP)
    unique = [r for r in range(30) if race["pool_val"][r] >= 286]  # the ten best validation counts are distinct
    assert len(unique) > 15
    for r in unique:
        assert race["pool_score"][r] == table.test[table.val.index(int(race["pool_val"][r]))]
    assert np.all(free["pool_score"] >= race["pool_score"])  # the same draws; a choice on the test set does better
    assert np.any(free["pool_score"] > race["pool_score"])


def test_bad_inputs_are_refused_before_any_work(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    import report

    path = write_table(tmp_path / "t.csv.gz", rows=120, seed=3)
    args = ["--table", str(path), "--out", str(tmp_path / "out"), "--quick", "--rounds", "4"]
    # a network run file that is not one: named, exit 2, nothing written
    for i, bad in enumerate(["{not json", json.dumps({"summary": {"rounds": 0, "blocks": []},
                                                      "trainings_per_process": {"member0": 1, "solo0": 1}}),
                             json.dumps({"summary": {"rounds": 1, "blocks": [{"winner": "pool"}]},
                                         "trainings_per_process": {"solo0": 3}})]):
        net = tmp_path / f"net{i}"
        net.mkdir()
        (net / "broken.json").write_text(bad)
        assert sim.main([*args, "--network", str(net)]) == 2
        assert "broken.json: not a real-network run" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    # a table that is missing or has no rows
    assert sim.main(["--table", str(tmp_path / "none.csv.gz"), "--out", str(tmp_path / "out"), "--quick"]) == 2
    assert "no rows" in capsys.readouterr().err
    # a results folder whose simulate.json is JSON but not a report
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "simulate.json").write_text(json.dumps({"results": []}))
    assert report.main(["--results", str(tmp_path / "res"), "--out", str(tmp_path / "r.md")]) == 2
    assert "bad-results" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


def test_network_run_records_nothing_when_the_devnet_fails(tmp_path: pathlib.Path) -> None:
    import network_run

    code = network_run.main(["--rounds", "10", "--members", "99", "--dir", str(tmp_path / "d"),
                             "--out", str(tmp_path / "net")])
    assert code != 0 and not (tmp_path / "net").exists()


def test_the_shared_search_never_evaluates_a_cell_twice_in_a_task(table: sim.Table) -> None:
    # 4 members x 3 evaluations x 10 rounds = 120 of 300 rows a task: all distinct; 8 members x 5 x 10
    # = 400: every row once, then repeats (a finite table)
    s = sim.make_setup(table, compute=3)
    once = sim.Shared(retrain_power=0)  # no new trainings of cells it has (SharedSearch's retrain_power)
    race = sim.run_race(table, s, 4, 20, seed=1, task_rounds=10, strategy="shared", solos=1, pool_keys=20,
                        shared=once)
    assert np.array_equal(race["pool_distinct"], race["pool_evals"]) and race["pool_evals"].sum() == 4 * 3 * 20
    assert np.all(race["pool_idle"] == 0)
    # a pool that commits everything it evaluated reveals its best test score (the model of the reveal)
    assert np.array_equal(race["pool_score"], race["pool_oracle"])
    again = sim.run_race(table, s, 4, 20, seed=1, task_rounds=10, strategy="shared", solos=1, pool_keys=20,
                         shared=once)
    assert all(np.array_equal(race[key], again[key]) for key in race if isinstance(race[key], np.ndarray))
    # by default it trains some of its best cells again (new seeds), the more the more it has seen
    default = sim.run_race(table, s, 4, 20, seed=1, task_rounds=10, strategy="shared", solos=1, pool_keys=20)
    repeats = (default["pool_evals"] - default["pool_distinct"]).reshape(2, 10)
    assert repeats.sum() > 0 and np.all(repeats[:, :5].sum(axis=1) < repeats[:, 5:].sum(axis=1))
    for shared in (once, sim.Shared(model="additive"), sim.Shared(model="evolution", explore=5),
                   sim.Shared(model="additive", greedy=0.5, elite=4)):
        big = sim.run_race(table, sim.make_setup(table, compute=20), 4, 5, seed=2, task_rounds=5, strategy="shared",
                           shared=shared, solos=1)
        new = np.cumsum(big["pool_distinct"])
        evals = np.cumsum(big["pool_evals"])
        assert evals[-1] > ROWS and np.array_equal(new, np.minimum(evals, ROWS)), shared  # no repeat while a row is left
    with pytest.raises(ValueError):
        sim.Shared(model="annealing")


def test_members_explore_their_own_subspaces_then_follow_the_shared_search(table: sim.Table) -> None:
    pos_of = {index: pos for pos, index in enumerate(table.index)}
    spans = [table.span(0, 4000), table.span(4000, 8000), table.span(8000, 12000), table.span(12000, SPACE.size)]
    sub_span = [(lo, hi - lo) for lo, hi in spans]
    assign = [[0, 1], [2, 3]]
    search = sim._SharedSearch(sim.Shared(model="additive", explore=40), table, pos_of, sim._features(table),
                               random.Random(1))
    evaluated: set[int] = set()
    turn = [0, 0]
    for _slot in range(20):  # 40 results: the exploration phase, round robin over each member's subspaces
        picks = sim._shared_slot(search, [0, 1], assign, sub_span, turn, evaluated, random.Random(_slot))
        for i, pos in picks.items():
            s_ = turn[i] - 1  # the subspace it just drew in
            lo, size = sub_span[assign[i][s_ % 2]]
            assert lo <= pos < lo + size
        assert len(set(picks.values())) == 2 and not set(picks.values()) & evaluated
        for i, pos in picks.items():
            evaluated.add(pos)
            search.observe(pos, table.val[pos], i)
    assert not search.exploring
    # then the model's proposals: new rows, best predicted first (the ranking refitted per slot)
    picks = sim._shared_slot(search, [0, 1], assign, sub_span, turn, evaluated, random.Random(99))
    assert turn == [20, 20] and not set(picks.values()) & evaluated
    assert [picks[0], picks[1]] == [p for p in search.ranking if p not in evaluated][:2]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> sim.Table:
    """60 rows: every party can see all of them in a round."""
    return sim.load_table(write_table(tmp_path_factory.mktemp("small") / "s.csv.gz", rows=60, seed=12))


def test_a_shared_pool_of_one_does_at_least_what_a_solo_miner_does(table: sim.Table, small: sim.Table) -> None:
    # one member against one solo miner (evolution) of the same compute over tasks of 10 rounds: the
    # pool never evaluates a row twice while one is left, so it has seen at least as many rows as the
    # solo miner by every deadline
    s = sim.make_setup(table, compute=2)
    race = sim.run_race(table, s, 1, 60, seed=3, task_rounds=10, strategy="shared", shared=sim.Shared(retrain_power=0))
    seen_pool = np.cumsum(race["pool_distinct"].reshape(6, 10), axis=1)
    seen_solo = np.cumsum(race["union_distinct"].reshape(6, 10), axis=1)
    assert np.all(seen_pool >= seen_solo) and np.any(seen_pool > seen_solo)
    # on a landscape with nothing to learn (random scores) both searches are about random: about
    # half of the 60 rounds each (one standard error: 6.5 points)
    assert float(np.mean(race["win_all"] == -1)) >= 0.4
    # with a round's compute as large as the table, the pool has every row by the first deadline
    # (the solo miner's evolution repeats some): committing all, it never reveals less
    full = sim.run_race(small, sim.make_setup(small, compute=small.rows), 1, 3, seed=3, task_rounds=3,
                        strategy="shared", pool_keys=small.rows // 8 + 1, shared=sim.Shared(retrain_power=0))
    assert full["pool_distinct"][0] == small.rows and full["union_distinct"][0] < small.rows
    assert np.all(full["pool_score"] >= full["solo_scores"][:, 0])


def test_a_cell_wins_once_per_task(small: sim.Table) -> None:
    s = sim.make_setup(small, compute=small.rows)  # everyone finds the best cells: without the rule they win again
    T = 10
    race = sim.run_race(small, s, 2, 20, seed=5, task_rounds=T, pool_keys=2)
    free = sim.run_race(small, s, 2, 20, seed=5, task_rounds=T, pool_keys=2, won_once=False)
    for task in race["win_pos"].reshape(-1, T):
        assert np.all(task >= 0) and len(set(task.tolist())) == T  # ten rounds, ten different cells
    assert any(len(set(task.tolist())) < T for task in free["win_pos"].reshape(-1, T))
    for r in range(20):  # the winner revealed its winning cell's test score
        w = race["win_all"][r]
        score = race["pool_score"][r] if w == -1 else race["solo_scores"][r, w]
        assert score == small.test[race["win_pos"][r]]
    # by default the rule acts where the table's task has epochs (mnist1d; a table without a meta
    # file: the default task's rule), not on digits
    assert small.task is None and sim.has_epochs(None) and sim.has_epochs("mnist1d") and not sim.has_epochs("digits")
    # tasks of one round: the rule never acts
    a = sim.run_race(small, s, 2, 6, seed=5)
    b = sim.run_race(small, s, 2, 6, seed=5, won_once=False)
    assert np.array_equal(a["win_all"], b["win_all"]) and np.array_equal(a["pool_score"], b["pool_score"])


def test_copies_under_several_keys_win_ties(small: sim.Table) -> None:
    # both parties see every row and reveal their best by validation: the same cell, a tie every round
    s = sim.make_setup(small, compute=4 * small.rows)
    kw = dict(std_threshold=sim.NO_BACKUP, reveal_by_validation=True, pool_keys=4)
    one = sim.run_race(small, s, 1, 30, seed=6, **kw)
    copies = sim.run_race(small, s, 1, 30, seed=6, pool_distinct=1, **kw)
    for race in (one, copies):
        assert np.array_equal(race["pool_score"], race["solo_scores"][:, 0])
    assert 7 < np.sum(one["win_all"] == -1) < 23  # one ticket each: about half
    assert np.sum(copies["win_all"] == -1) >= 27  # 32 tickets against one: about 32/33 of the ties
    with pytest.raises(ValueError):
        sim.run_race(small, s, 1, 2, seed=6, pool_distinct=0)


def test_each_party_trains_with_its_own_seed(small: sim.Table, tmp_path: pathlib.Path) -> None:
    # a second seed of the same 60 cells: every score moved by +-6 in validation, -+3 in test
    a = write_table(tmp_path / "a.csv.gz", rows=60, seed=12)
    rows = bt.read_table(a)
    rng = random.Random(1)
    moved = {}
    for i, r in rows.items():
        d = rng.choice((-6, 6)) if 6 <= r.val_correct <= r.val_total - 6 and 3 <= r.test_correct <= r.test_total - 3 else 0
        moved[i] = dataclasses.replace(r, val_correct=r.val_correct + d, test_correct=r.test_correct - d // 2)
    b = tmp_path / "b.csv.gz"
    bt.write_table(b, moved, ["rows: 60; synthetic second seed"])
    noise = sim.seed_noise_from(a, b, bins=2)
    assert len(noise.bins) == 2 and noise.bins[-1][0] == math.inf
    for _upper, sd_v, sd_t, corr in noise.bins:  # each seed's deviation: the difference over sqrt(2)
        assert 3.5 < sd_v < 4.5 and 1.7 < sd_t < 2.3 and corr < -0.99
    with pytest.raises(ValueError):
        sim.seed_noise_from(a, b, bins=8)  # fewer than 8 common rows a bin
    s = sim.make_setup(small, compute=small.rows, seed_noise=noise)
    race = sim.run_race(small, s, 2, 20, seed=5, task_rounds=10, pool_keys=2)
    again = sim.run_race(small, s, 2, 20, seed=5, task_rounds=10, pool_keys=2)
    assert all(np.array_equal(race[key], again[key]) for key in race if isinstance(race[key], np.ndarray))
    # the winners revealed their own training's score, not the table's (one seed for all)
    won = [(int(w), int(p), float(race["pool_score"][r] if w == -1 else race["solo_scores"][r, w]))
           for r, (w, p) in enumerate(zip(race["win_all"], race["win_pos"]))]
    assert any(score != small.test[p] for _w, p, score in won)
    # a win spends the winner's (genotype, seed) only: never the same party and training twice in
    # a task, while other trainings of a cell that won (other seeds, other parties) still count
    items = [(int(w), int(it)) for w, it in zip(race["win_all"], race["win_item"])]
    assert all(it % small.rows == p for (_w, it), (_w2, p, _s) in zip(items, won))
    for task in (items[:10], items[10:]):
        assert len(set(task)) == 10
    assert any(len({p for _w, p, _s in task}) < 10 for task in (won[:10], won[10:]))
    # a party's seeds are its own: same cell, other deviations; fixed within the task
    seeds = [sim._Seeds(small, noise, np.random.default_rng(k)) for k in (1, 2)]
    assert [seeds[0].val(p) for p in range(60)] == [seeds[0].val(p) for p in range(60)]
    assert [seeds[0].val(p) for p in range(60)] != [seeds[1].val(p) for p in range(60)]
    assert sim._Seeds(small, None, np.random.default_rng(1)).val(3) == small.val[3]


def test_the_seed_model_comes_from_the_pair_beside_the_table_and_of_its_recipe(tmp_path: pathlib.Path) -> None:
    """A table's seed model is the ``correlation_mnist1d/`` pair in its own folder, and only when
    that pair was trained with the table's recipe (a table of an older recipe keeps its own)."""
    def meta(path: pathlib.Path, recipe: list[object]) -> None:
        bt.meta_path(path).write_text(json.dumps({"task": "mnist1d", "recipe": recipe}))

    table_path = write_table(tmp_path / "t.csv.gz", rows=120, seed=3)
    meta(table_path, [3, 64])
    assert sim.default_seed_noise(sim.load_table(table_path)) is None  # no pair beside it
    (tmp_path / "correlation_mnist1d").mkdir()
    pair = [tmp_path / n for n in sim.SEED_PAIRS["mnist1d"]]
    for p in pair:
        write_table(p, rows=120, seed=3)
        meta(p, [3, 64])
    noise = sim.default_seed_noise(sim.load_table(table_path))
    assert noise is not None and "120 cells" in noise.source
    meta(pair[0], [3, 64, 1])  # the pair of another recipe
    assert sim.default_seed_noise(sim.load_table(table_path)) is None
