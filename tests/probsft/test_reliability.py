"""User mistakes at the command line: each is one line on stderr and exit 2, found before the work,
with nothing of an earlier run lost (issue 10, "Reliability")."""

import errno
import json
import re

import pytest

from probsft.cli import build_parser, main
from probsft.files import locked_output


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "ab>", "response": "ba"}) + "\n")
    return path


def test_a_second_run_into_a_locked_folder_fails_at_once(tmp_path, capsys):
    out = tmp_path / "w"
    with locked_output(out, "--out"):
        assert main(["weights", "nll", "--out", str(out)]) == 2
    _one_line_error(capsys, "in use by another probsft run")
    assert sorted(p.name for p in out.iterdir()) == []           # nothing written by the second


@pytest.mark.parametrize("argv", [["weights", "nll", "--out", "{file}"],
                                  ["simulate", "--preset", "crossover", "--out", "{file}/sub"],
                                  ["reproduce", "--only", "theory", "--out", "{file}"],
                                  ["validate", "--out", "{file}"],
                                  ["backbone", "build", "--out", "{file}"]])
def test_a_file_valued_out_is_refused_before_the_work(argv, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main([a.replace("{file}", str(blocker)) for a in argv]) == 2
    _one_line_error(capsys, "--out", "a file is in the way")
    assert blocker.read_text() == "x"


def test_finetune_file_valued_output_is_refused_before_loading_the_model(tmp_path, data, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["finetune", "--model", str(tmp_path / "no" / "model"), "--data", str(data),
                 "--output", str(blocker / "run"), "--no-progress"]) == 2
    _one_line_error(capsys, "--output", "a file is in the way")


@pytest.mark.parametrize("command", ["probe", "recommend"])
def test_json_into_a_folder_is_refused_before_loading_the_model(command, tmp_path, data, capsys):
    # the model path does not exist: had the model been loaded first, the error would name it
    assert main([command, "--model", str(tmp_path / "no" / "model"), "--data", str(data),
                 "--json", str(tmp_path)]) == 2
    _one_line_error(capsys, "--json", "is a folder")


def test_evaluate_file_valued_out_is_refused_before_loading_the_model(tmp_path, data, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["evaluate", "--model", str(tmp_path / "no" / "model"), "--data", str(data),
                 "--out", str(blocker)]) == 2
    _one_line_error(capsys, "--out", "a file is in the way")


def test_reproduce_only_an_unknown_area_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--only", "foo", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'foo'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags", [["--temperature", "-1"], ["--temperature", "nan"],
                                   ["--temperature", "inf"], ["--top-p", "2"], ["--top-p", "0"]])
def test_evaluate_rejects_bad_sampling_flags(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", "m", "--data", "d", *flags])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_evaluate_several_greedy_samples_is_an_error_before_loading(tmp_path, data, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "no" / "model"), "--data", str(data),
                 "--samples", "3", "--temperature", "0"]) == 2
    _one_line_error(capsys, "--temperature > 0")


def test_evaluate_samples_default_to_the_papers_temperature():
    args = build_parser().parse_args(["evaluate", "--model", "m", "--data", "d", "--samples", "3"])
    assert args.temperature is None      # resolved in run(): 1.0 for k > 1, 0 (greedy) for k = 1


def test_a_full_disk_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    import probsft.reproduce.theory as theory

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "w" / "weights.csv"))

    monkeypatch.setattr(theory, "render", full)
    assert main(["weights", "nll", "--out", str(tmp_path / "w")]) == 2
    _one_line_error(capsys, "No space left on device", "weights.csv")


def test_finetune_never_writes_into_its_input_model_folder(tmp_path, data, capsys):
    model = tmp_path / "base"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for output in (model, model / "run", tmp_path):
        assert main(["finetune", "--model", str(model), "--data", str(data),
                     "--output", str(output), "--no-progress"]) == 2
        _one_line_error(capsys, "overlaps the input model folder")
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]
    assert (model / "config.json").read_text() == "{}"


def test_validate_with_a_run_folder_as_model_names_its_model_subfolder(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    assert main(["validate", "--model", str(run), "--out", str(tmp_path / "v")]) == 2
    _one_line_error(capsys, "is a run folder", str(run / "model"))
    assert not (tmp_path / "v").exists()


def test_every_flag_an_error_message_names_exists():
    import torch

    import probsft
    from probsft.errors import UserError

    commands = build_parser()._subparsers._group_actions[0].choices.values()  # noqa: SLF001
    options = {opt for command in commands for a in command._actions  # noqa: SLF001
               for opt in a.option_strings}
    labels = torch.zeros(2, dtype=torch.long)
    messages = []
    for call in (lambda: probsft.objective("nll@p>=Q90").loss(torch.zeros(2, 3), labels),
                 lambda: probsft.fused_linear_loss(torch.zeros(2, 4), torch.zeros(3, 4), labels,
                                                   "nll@p>=Q90")):
        with pytest.raises(UserError) as info:
            call()
        messages.append(str(info.value))
    for message in messages:
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", message))
        assert named <= options, (named - options, message)
