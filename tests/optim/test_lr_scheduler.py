"""Every scheduler against PyTorch's: the lr (and cycled momentum) of each group over 30+ steps,
state-dict round trips mid-schedule, resuming with last_epoch, and PyTorch's warnings/errors."""
from __future__ import annotations

import warnings

import pytest

from _optim_parity import torch

import disttorch
import disttorch.optim as optim
from disttorch.optim import lr_scheduler as ours_sched

STEPS = 32


def _optimizers(kind="SGD"):
    """The same two-group optimizer in both libraries (groups differ in lr)."""
    def groups(lib):
        return [{"params": [lib.zeros(2, requires_grad=True)]},
                {"params": [lib.zeros(2, requires_grad=True)], "lr": 0.5}]
    kwargs = {"lr": 0.1, "momentum": 0.9} if kind == "SGD" else {"lr": 0.1}
    return getattr(optim, kind)(groups(disttorch), **kwargs), getattr(torch.optim, kind)(groups(torch), **kwargs)


SINGLE = [
    ("LambdaLR", lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 0.95 ** e + 0.01 * e)),
    ("LambdaLR-per-group", lambda m, o: m.LambdaLR(o, lr_lambda=[lambda e: 1 / (e + 1), lambda e: 0.9 ** e])),
    ("MultiplicativeLR", lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.97)),
    ("StepLR", lambda m, o: m.StepLR(o, step_size=5, gamma=0.5)),
    ("MultiStepLR", lambda m, o: m.MultiStepLR(o, milestones=[3, 8, 8, 20], gamma=0.3)),
    ("ConstantLR", lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=4)),
    ("LinearLR", lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=10)),
    ("ExponentialLR", lambda m, o: m.ExponentialLR(o, gamma=0.9)),
    ("PolynomialLR", lambda m, o: m.PolynomialLR(o, total_iters=20, power=2.0)),
    ("CosineAnnealingLR", lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    ("CosineAnnealingWarmRestarts", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2, eta_min=0.01)),
    ("CyclicLR-triangular", lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.2], step_size_up=4)),
    ("CyclicLR-triangular2", lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=3, step_size_down=5,
                                                     mode="triangular2")),
    ("CyclicLR-exp_range", lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=4, mode="exp_range", gamma=0.95,
                                                   base_momentum=0.7, max_momentum=0.95)),
    ("OneCycleLR-cos", lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=STEPS + 1)),
    ("OneCycleLR-linear-3phase", lambda m, o: m.OneCycleLR(o, max_lr=1.0, epochs=3, steps_per_epoch=11,
                                                           anneal_strategy="linear", three_phase=True,
                                                           pct_start=0.25)),
]
COMPOSED = [
    ("SequentialLR", lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=5),
                                                      m.ExponentialLR(o, gamma=0.9),
                                                      m.CosineAnnealingLR(o, T_max=6)], milestones=[5, 12])),
    ("ChainedScheduler", lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.5, total_iters=4),
                                                          m.ExponentialLR(o, gamma=0.9)])),
]


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _assert_same_schedule(opt, sched, ref_opt, ref, steps=STEPS, metrics=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping schedulers without optimizer steps warns in both
        for t in range(steps):
            assert sched.get_last_lr() == pytest.approx(ref.get_last_lr(), rel=1e-12), f"step {t}"
            assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in ref_opt.param_groups],
                                                                       rel=1e-12)
            assert _momenta(opt) == pytest.approx(_momenta(ref_opt), rel=1e-12)
            if metrics is None:
                sched.step()
                ref.step()
            else:
                sched.step(metrics[t])
                ref.step(metrics[t])


@pytest.mark.parametrize("name,make", SINGLE + COMPOSED, ids=[c[0] for c in SINGLE + COMPOSED])
def test_matches_pytorch(name, make):
    opt, ref_opt = _optimizers("Adam" if name.endswith("exp_range") else "SGD")
    _assert_same_schedule(opt, make(ours_sched, opt), ref_opt, make(torch.optim.lr_scheduler, ref_opt))


@pytest.mark.parametrize("kwargs", [dict(patience=2, factor=0.5), dict(mode="max", threshold_mode="abs", patience=1,
                                                                       cooldown=2, min_lr=[0.02, 0.1])])
def test_reduce_on_plateau_matches_pytorch(kwargs):
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.8, 0.81, 0.82, 0.83, 0.84, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69] * 2
    opt, ref_opt = _optimizers()
    _assert_same_schedule(opt, ours_sched.ReduceLROnPlateau(opt, **kwargs), ref_opt,
                          torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kwargs), metrics=metrics)


@pytest.mark.parametrize("name,make", SINGLE + COMPOSED, ids=[c[0] for c in SINGLE + COMPOSED])
def test_state_dict_round_trip_continues_the_schedule(name, make, tmp_path):
    """Stop half-way, checkpoint optimizer + scheduler, rebuild both and continue: same lrs as PyTorch."""
    from disttorch.serialization import load, save
    opt, ref_opt = _optimizers("Adam" if name.endswith("exp_range") else "SGD")
    sched, ref = make(ours_sched, opt), make(torch.optim.lr_scheduler, ref_opt)
    _assert_same_schedule(opt, sched, ref_opt, ref, steps=STEPS // 2)
    save({"optim": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.pt")
    ck = load(tmp_path / "s.pt")
    opt2, _ = _optimizers("Adam" if name.endswith("exp_range") else "SGD")
    sched2 = make(ours_sched, opt2)
    opt2.load_state_dict(ck["optim"])
    sched2.load_state_dict(ck["sched"])
    _assert_same_schedule(opt2, sched2, ref_opt, ref, steps=STEPS // 2)


def test_initial_lr_is_recorded_and_resuming_requires_it():
    opt, _ = _optimizers()
    ours_sched.StepLR(opt, step_size=2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.5]
    fresh, _ = _optimizers()
    with pytest.raises(KeyError, match=r"param 'initial_lr' is not specified in param_groups\[0\] when resuming"):
        ours_sched.StepLR(fresh, step_size=2, last_epoch=3)


def test_resume_with_last_epoch_matches_pytorch():
    opt, ref_opt = _optimizers()
    for o in (opt, ref_opt):
        for g in o.param_groups:
            g["initial_lr"] = g["lr"]
    _assert_same_schedule(opt, ours_sched.CosineAnnealingLR(opt, T_max=12, last_epoch=4), ref_opt,
                          torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=12, last_epoch=4))


def test_explicit_epoch_uses_the_closed_form_like_pytorch():
    opt, ref_opt = _optimizers()
    sched, ref = ours_sched.StepLR(opt, 3, gamma=0.5), torch.optim.lr_scheduler.StepLR(ref_opt, 3, gamma=0.5)
    opt.step()
    with pytest.warns(UserWarning, match="epoch parameter in `scheduler.step\\(\\)` was not necessary"):
        sched.step(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.step(7)
    assert sched.last_epoch == ref.last_epoch == 7
    assert sched.get_last_lr() == pytest.approx(ref.get_last_lr())


def test_warnings_for_call_order_and_direct_get_lr():
    opt, _ = _optimizers()
    sched = ours_sched.ExponentialLR(opt, gamma=0.5)
    with pytest.warns(UserWarning, match=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"):
        sched.step()
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()

    opt2, _ = _optimizers()
    sched2 = ours_sched.ExponentialLR(opt2, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right order warns about nothing
        opt2.step()
        sched2.step()
    assert sched2.get_last_lr() == [0.05, 0.25]


def test_scheduler_errors_match_pytorch():
    opt, _ = _optimizers()
    with pytest.raises(TypeError, match="^list is not an Optimizer$"):
        ours_sched.StepLR([], step_size=1)
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        ours_sched.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="Expected positive integer T_0, but got 0"):
        ours_sched.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 3"):
        ours_sched.LambdaLR(opt, [lambda e: 1.0] * 3)
    one = ours_sched.OneCycleLR(opt, max_lr=1.0, total_steps=2)
    opt.step()
    one.step()
    one.step()
    with pytest.raises(ValueError, match="Tried to step 3 times. The specified number of total steps is 2"):
        one.step()
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        ours_sched.ChainedScheduler([ours_sched.ReduceLROnPlateau(opt)])


def test_tensor_lr_is_filled_in_place():
    p = disttorch.zeros(2, requires_grad=True)
    lr = disttorch.tensor(0.1)
    opt = optim.SGD([p], lr=lr)
    sched = ours_sched.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.05)
