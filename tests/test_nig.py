"""dugMatting's NIG: moments, Eq. 2 summation, Eq. 1 loss, the NIG head and the "nig" model wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import gammaln

import medmat.losses.nig  # noqa: F401  (registers the "nig" criterion)
import medmat.models.nig  # noqa: F401  (registers the "nig" model)
from medmat.data.sample import Sample
from medmat.engine.config import load_config
from medmat.engine.inference import load_run, predict
from medmat.engine.trainer import train
from medmat.errors import MedmatError
from medmat.losses import build_criterion
from medmat.losses.nig import evidence_regularizer, nig_nll
from medmat.models import build_model
from medmat.models.contract import NIG_OUTPUTS
from medmat.models.nig import NIGHead, nig_from_outputs
from medmat.uncertainty.nig import (
    NIG,
    aleatoric_uncertainty,
    aleatoric_variance,
    epistemic_uncertainty,
    nig_moments,
    nig_sum,
    nig_sum_all,
    predictive_scale,
)
from tiny_configs import MEDICAL_TINY, TINY_MODELS, tiny_model

TINY_BASES = {name: tiny_model(name) for name in TINY_MODELS}
#: The criterion that trains each base model.
BASE_CRITERIA = {"medical_matting": "medical_matting", "region_aware_matting": "medical_matting",
                 "adamatting": "adamatting", "tcp_matting": "tcp_matting"}


# Tiny networks: a second thread only waits on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


def random_nig(shape=(200,), seed=0) -> tuple[np.ndarray, NIG]:
    """Targets y in [0, 1] and valid NIG parameters (float64 numpy)."""
    rng = np.random.default_rng(seed)
    nig = NIG(rng.uniform(0, 1, shape), rng.uniform(0.05, 20, shape), rng.uniform(1.01, 30, shape),
              rng.uniform(1e-3, 2, shape))
    return rng.uniform(0, 1, shape), nig


def as_torch(nig: NIG) -> NIG:
    return nig.map(torch.from_numpy)


def disc_batch(size: int = 32, batch: int = 2) -> dict[str, torch.Tensor]:
    """Soft discs with an image, alpha, pseudo mask, 3 annotator masks and an all-unknown trimap."""
    coords = torch.arange(size, dtype=torch.float32)
    radius = torch.hypot(coords[None, :] - size / 2, coords[:, None] - size / 2)
    alpha = torch.stack([((size / 4 + 2 * b) - radius).div(3.0).add(0.5).clamp(0, 1) for b in range(batch)])[:, None]
    noise = 0.03 * torch.randn(alpha.shape, generator=torch.Generator().manual_seed(1))
    return {
        "image": (0.2 + 0.6 * alpha + noise).clamp(0, 1),
        "alpha": alpha,
        "pseudo_mask": (alpha >= 0.5).float(),
        "masks": torch.cat([(alpha >= level).float() for level in (0.3, 0.5, 0.7)], dim=1),
        "trimap": torch.full_like(alpha, 0.5),
    }


# --- moments -------------------------------------------------------------------------------------


def test_moments_by_hand_for_arrays_and_tensors():
    omega, alpha, beta = 4.0, 3.0, 2.0
    assert aleatoric_uncertainty(alpha, beta) == pytest.approx(1.0)  # 2 / (3 - 1)
    assert epistemic_uncertainty(omega, alpha, beta) == pytest.approx(0.25)  # 2 / (4 * 2)
    assert aleatoric_variance(np.array(alpha), np.array(beta)) == pytest.approx(1.0)  # 4 / (4 * 1)
    assert predictive_scale(omega, alpha, beta) == pytest.approx(math.sqrt(2 * 5 / 12))
    # Var[σ²] diverges for α <= 2 (App. A needs α > 2).
    variance = aleatoric_variance(torch.tensor([1.5, 2.0, 2.5]), torch.tensor([1.0, 1.0, 1.0]))
    assert torch.isinf(variance[:2]).all() and variance[2].item() == pytest.approx(1 / (1.5**2 * 0.5))
    moments = nig_moments(as_torch(NIG(*(np.full(3, v) for v in (0.3, omega, alpha, beta)))))
    assert torch.equal(moments["alpha"], torch.full((3,), 0.3, dtype=torch.float64))
    assert moments["epistemic"].numpy() == pytest.approx(0.25)


# --- NIG summation (Eq. 2) -------------------------------------------------------------------------


def test_nig_sum_by_hand():
    first, second = NIG(0.2, 1.0, 2.0, 0.5), NIG(0.8, 3.0, 3.0, 1.0)
    gamma, omega, alpha, beta = nig_sum(first, second)
    assert gamma == pytest.approx((1.0 * 0.2 + 3.0 * 0.8) / 4.0)  # 0.65
    assert omega == pytest.approx(4.0)
    assert alpha == pytest.approx(2.0 + 3.0 + 0.5)
    assert beta == pytest.approx(0.5 + 1.0 + 0.5 * 1.0 * 0.45**2 + 0.5 * 3.0 * 0.15**2)  # 1.635


def test_nig_sum_is_commutative_associative_and_kind_preserving():
    _, a = random_nig(seed=1)
    _, b = random_nig(seed=2)
    _, c = random_nig(seed=3)
    ab, ba = nig_sum(a, b), nig_sum(b, a)
    for left, right in zip(ab, ba):
        np.testing.assert_allclose(left, right, rtol=1e-12)
    for left, right in zip(nig_sum(ab, c), nig_sum(a, nig_sum(b, c))):
        np.testing.assert_allclose(left, right, rtol=1e-10)
    for left, right in zip(nig_sum_all([a, b, c]), nig_sum(ab, c)):
        np.testing.assert_allclose(left, right, rtol=1e-12)
    summed = nig_sum(as_torch(a), as_torch(b))
    assert all(isinstance(value, torch.Tensor) for value in summed)
    for left, right in zip(summed, ab):
        np.testing.assert_allclose(left.numpy(), right, rtol=1e-12)
    # The fused mean lies between the two means (an ω-weighted average).
    assert np.all(ab.gamma >= np.minimum(a.gamma, b.gamma) - 1e-12)
    assert np.all(ab.gamma <= np.maximum(a.gamma, b.gamma) + 1e-12)


def test_summing_a_zero_evidence_nig_keeps_the_mean_but_still_adds_alpha():
    """Eq. 2 is no averaging: ω2 -> 0 leaves γ, ω (and β for β2 -> 0) unchanged, but α gains α2 + 1/2."""
    _, nig = random_nig(seed=4)
    tiny = 1e-9
    empty = NIG(np.full_like(nig.gamma, 0.9), np.full_like(nig.gamma, tiny), np.full_like(nig.gamma, 1 + tiny),
                np.full_like(nig.gamma, tiny))
    fused = nig_sum(nig, empty)
    np.testing.assert_allclose(fused.gamma, nig.gamma, atol=1e-7)
    np.testing.assert_allclose(fused.omega, nig.omega, atol=1e-8)
    np.testing.assert_allclose(fused.beta, nig.beta, atol=1e-7)
    np.testing.assert_allclose(fused.alpha, nig.alpha + 1.5, atol=1e-8)
    # So even an uninformative summand lowers the aleatoric uncertainty E[σ²] = β / (α - 1).
    assert np.all(aleatoric_uncertainty(fused.alpha, fused.beta) < aleatoric_uncertainty(nig.alpha, nig.beta))


# --- Eq. 1 and the regulariser ---------------------------------------------------------------------


def eq1_by_scipy(y: np.ndarray, nig: NIG, with_log_phi: bool = True) -> np.ndarray:
    gamma, omega, alpha, beta = nig
    big_omega = 2 * beta * (1 + omega)
    value = (0.5 * np.log(np.pi / omega) - alpha * np.log(big_omega)
             + (alpha + 0.5) * np.log((y - gamma) ** 2 * omega + big_omega))
    return value + (gammaln(alpha) - gammaln(alpha + 0.5) if with_log_phi else 0.0)


def test_nll_is_eq1_with_every_term_and_the_student_t_likelihood():
    y, nig = random_nig()
    nll = nig_nll(torch.from_numpy(y), as_torch(nig)).numpy()
    np.testing.assert_allclose(nll, eq1_by_scipy(y, nig), rtol=1e-10, atol=1e-10)
    # Independently: Eq. 1 is -log of the Student-t marginal (2α dof, loc γ, scale² β(1+ω)/(ωα)).
    log_density = stats.t.logpdf(y, df=2 * nig.alpha, loc=nig.gamma, scale=predictive_scale(*nig[1:]))
    np.testing.assert_allclose(nll, -log_density, rtol=1e-9, atol=1e-9)


def test_dropping_log_phi_as_the_release_does_changes_the_loss():
    y, nig = random_nig(seed=5)
    without = eq1_by_scipy(y, nig, with_log_phi=False)
    nll = nig_nll(torch.from_numpy(y), as_torch(nig)).numpy()
    difference = nll - without
    np.testing.assert_allclose(difference, gammaln(nig.alpha) - gammaln(nig.alpha + 0.5), rtol=1e-10)
    # log Γ(α)/Γ(α+½) depends on α (about -log(α)/2): not a constant the optimiser could ignore.
    assert np.ptp(difference) > 0.5
    log_density = stats.t.logpdf(y, df=2 * nig.alpha, loc=nig.gamma, scale=predictive_scale(*nig[1:]))
    assert np.max(np.abs(without + log_density)) > 0.5
    # Its gradient in α is ψ(α) - ψ(α + ½), not 0.
    alpha = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    gamma, omega, beta = (torch.tensor(v, dtype=torch.float64) for v in (0.4, 2.0, 0.3))
    nig_nll(torch.tensor(0.5, dtype=torch.float64), NIG(gamma, omega, alpha, beta)).backward()
    with_term = alpha.grad.item()
    expected = torch.special.digamma(torch.tensor([3.0, 3.5], dtype=torch.float64)).diff().neg()[0]
    big_omega = 2 * 0.3 * 3.0
    without_term = -math.log(big_omega) + math.log(0.1**2 * 2.0 + big_omega)  # d/dα of the other terms
    assert with_term - without_term == pytest.approx(expected.item(), rel=1e-10)
    assert abs(expected.item()) > 0.1


def test_evidence_regulariser_by_hand():
    nig = NIG(*(torch.tensor([v1, v2]) for v1, v2 in ((0.5, 0.2), (2.0, 1.0), (3.0, 1.5), (1.0, 9.0))))
    target = torch.tensor([0.9, 0.2])
    # |0.9 - 0.5| (2*2 + 3) = 2.8;  |0.2 - 0.2| (...) = 0.
    assert evidence_regularizer(target, nig).tolist() == pytest.approx([2.8, 0.0])


# --- the head and the wrapper ----------------------------------------------------------------------


def test_head_activations_keep_every_parameter_valid():
    head = NIGHead(2)
    features = torch.tensor([-200.0, -5.0, 0.0, 5.0, 200.0]).reshape(1, 1, 1, 5).repeat(1, 2, 1, 1)
    with torch.no_grad():
        for layer in head.layers.values():
            layer.weight.fill_(0.5)  # sum over the 2 channels: the layer's input value itself
            layer.bias.zero_()
        gamma, omega, alpha, beta = head(features)
    x = features[:, :1]
    assert torch.equal(gamma, torch.sigmoid(x))
    assert (omega > 0).all() and (alpha > 1).all() and (beta > 0).all()
    np.testing.assert_allclose(omega.numpy(), torch.nn.functional.softplus(x).numpy() + 1e-6, rtol=1e-6)
    np.testing.assert_allclose(alpha.numpy(), torch.nn.functional.softplus(x).numpy() + 1 + 1e-6, rtol=1e-6)


@pytest.mark.parametrize("base_name", list(TINY_BASES))
def test_wrapper_fits_every_registered_model(base_name):
    torch.manual_seed(0)
    model = build_model("nig", base=TINY_BASES[base_name])
    assert model.feature_layer is not None and model.stem is None  # hooked on the base's last alpha layer
    batch = disc_batch()
    user_map = torch.zeros_like(batch["alpha"])
    user_map[:, :, 4:12, 4:12] = -1.0
    outputs = model({**batch, "user_map": user_map})
    shape = tuple(batch["alpha"].shape)
    for key in ("alpha", "base_alpha", *NIG_OUTPUTS, "epistemic", "aleatoric", "aleatoric_variance", "lesion_uncertainty"):
        assert tuple(outputs[key].shape) == shape, key
    nig = nig_from_outputs(outputs)
    assert torch.equal(outputs["alpha"], nig.gamma)
    assert (nig.omega > 0).all() and (nig.alpha > 1).all() and (nig.beta > 0).all()
    assert torch.allclose(outputs["epistemic"], nig.beta / (nig.omega * (nig.alpha - 1)))
    # γ's layer starts as a copy of the base's alpha logit: the wrapped model predicts the base's alpha.
    assert torch.allclose(outputs["alpha"], outputs["base_alpha"], atol=2e-4)
    # The criterion trains every parameter of base and head (none unused, so DDP needs no flag).
    criterion = build_criterion({"name": "nig", "base": {"name": BASE_CRITERIA[base_name]}})
    total, parts = criterion(outputs, batch, 0, 1)
    total.backward()
    assert math.isfinite(total.item()) and parts["total"] == pytest.approx(total.item())
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


def test_user_map_reaches_the_base_and_empty_maps_are_the_default():
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY).eval()
    image = disc_batch()["image"]
    labelled = torch.zeros(2, 1, 32, 32)
    labelled[:, :, :16] = 1.0

    def predict(**extra):
        torch.manual_seed(5)  # the same prior samples for every call
        with torch.no_grad():
            return model({"image": image, **extra})["alpha"]

    without = predict()
    assert torch.equal(without, predict(user_map=torch.zeros_like(labelled)))
    assert not torch.allclose(without, predict(user_map=labelled))
    first_conv = next(m for m in model.base.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2  # the image and the user map
    with pytest.raises(ValueError, match="user_map must have shape"):
        model({"image": image, "user_map": labelled[:1]})


def test_training_mode_draws_random_user_maps_from_the_alpha():
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY)
    batch = disc_batch(batch=8)
    maps = [model.user_map_for(batch) for _ in range(5)]
    values = torch.unique(torch.cat(maps))
    assert set(values.tolist()) <= {-1.0, 0.0, 0.5, 1.0} and len(values) > 1
    torch.manual_seed(3)
    first = model.user_map_for(batch)
    torch.manual_seed(3)
    assert torch.equal(first, model.user_map_for(batch))  # torch's seed fixes the draw
    model.eval()
    assert not model.user_map_for(batch).any()


def test_stem_fallback_and_configuration_errors():
    torch.manual_seed(0)
    model = build_model("nig", base={**MEDICAL_TINY, "use_matting_net": False})  # no last alpha layer
    assert model.feature_layer is None and model.stem is not None
    outputs = model(disc_batch())
    assert (outputs["nig_alpha"] > 1).all()
    forced = build_model("nig", base=MEDICAL_TINY, features="stem")
    assert forced.stem is not None
    with pytest.raises(MedmatError, match="in_channels"):
        build_model("nig", base={**MEDICAL_TINY, "in_channels": 2})
    with pytest.raises(MedmatError, match="unknown model 'dim'"):
        build_model("nig", base={"name": "dim"})
    with pytest.raises(MedmatError, match="itself"):
        build_model("nig", base={"name": "nig"})
    with pytest.raises(MedmatError, match="not a Conv2d or Linear"):
        build_model("nig", base=MEDICAL_TINY, features="prob_unet")
    with pytest.raises(MedmatError, match="base must be null or a mapping"):
        build_criterion({"name": "nig", "base": "medical_matting"})


# --- the criterion and training --------------------------------------------------------------------


def test_criterion_replaces_the_alpha_l1_and_keeps_the_mask_losses():
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY)
    batch = disc_batch()
    outputs = model(batch)
    criterion = build_criterion({"name": "nig", "base": {"name": "medical_matting"}, "evidence_weight": 0.05})
    total, parts = criterion(outputs, batch, 0, 1)
    nig = nig_from_outputs(outputs)
    nll = nig_nll(batch["alpha"], nig).mean().item()
    evidence = evidence_regularizer(batch["alpha"], nig).mean().item()
    assert parts["nig_nll"] == pytest.approx(nll) and parts["nig_evidence"] == pytest.approx(evidence)
    assert parts["nig"] == pytest.approx(nll + 0.05 * evidence)
    # Medical Matting's criterion contributes its mask losses only: no L1 on alpha.
    assert {"base_ce", "base_kl", "base_seg"} <= set(parts) and "base_alpha_l1" not in parts
    expected = parts["nig"] + parts["alpha_gradient"] + parts["base_seg"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    alone, alone_parts = build_criterion({"name": "nig", "gradient_weight": 0})(outputs, batch, 0, 1)
    assert alone.item() == pytest.approx(nll + 0.01 * evidence, rel=1e-5) and set(alone_parts) == {
        "nig_nll", "nig_evidence", "nig", "total"}


def test_base_alpha_keeps_the_base_criterion_alpha_terms_on_the_base_alpha():
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY)
    batch = disc_batch()
    outputs = model(batch)
    base_config = {"name": "medical_matting", "weighting": "none"}
    criterion = build_criterion({"name": "nig", "base": base_config, "base_alpha": True, "gradient_weight": 0})
    total, parts = criterion(outputs, batch, 0, 1)
    # The base's own alpha (not gamma) gets Medical Matting's L1, as when it trains alone.
    expected_l1 = (outputs["base_alpha"] - batch["alpha"]).abs().mean().item()
    assert parts["base_alpha_l1"] == pytest.approx(expected_l1, rel=1e-5)
    alone = build_criterion(base_config)
    base_total, _ = alone({**outputs, "alpha": outputs["base_alpha"]}, batch, 0, 1)
    assert total.item() == pytest.approx(parts["nig"] + base_total.item(), rel=1e-5)


@pytest.mark.parametrize("features", ["auto", "stem"])
def test_detach_base_trains_the_head_alone_from_the_nig_likelihood(features):
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY, detach_base=True, features=features)
    batch = disc_batch()
    outputs = model(batch)
    total, _ = build_criterion({"name": "nig", "gradient_weight": 0})(outputs, batch, 0, 1)
    total.backward()
    assert all(p.grad is None for p in model.base.parameters())
    head = list(model.head.parameters()) + (list(model.stem.parameters()) if model.stem is not None else [])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    # Same head and base weights: the outputs equal those of the undetached wrapper.
    joined = build_model("nig", base=MEDICAL_TINY, features=features)
    joined.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    detached_alpha = model.eval()(batch)["alpha"]
    torch.manual_seed(1)
    torch.testing.assert_close(joined.eval()(batch)["alpha"], detached_alpha)


def test_a_manual_training_step_lowers_the_nig_loss():
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY)
    criterion = build_criterion({"name": "nig", "base": {"name": "medical_matting"}})
    optimizer = torch.optim.Adam(list(model.parameters()) + list(criterion.parameters()), lr=1e-2)
    batch = {**disc_batch(), "user_map": torch.zeros(2, 1, 32, 32)}  # fixed maps: the loss changes by the step alone
    losses = []
    for _ in range(4):
        torch.manual_seed(1)  # the same posterior samples every step
        total, parts = criterion(model(batch), batch, 0, 1)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(parts["nig"])
    assert losses[-1] < losses[0]


def test_the_engine_trains_evaluates_and_reloads_a_nig_model(tmp_path):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:24, :24]
    samples = []
    for index in range(4):
        alpha = np.clip(0.5 - (np.hypot(rows - 12, cols - 12) - 5 - index) / 3, 0, 1).astype(np.float32)
        image = np.clip(0.2 + 0.6 * alpha + rng.normal(0, 0.03, alpha.shape), 0, 1).astype(np.float32)
        masks = np.stack([alpha >= level for level in (0.3, 0.5, 0.7)])
        samples.append(Sample(id=f"disc-{index}", image=image[None], masks=masks, alpha=alpha))
    config = load_config({
        "model": {"name": "nig", "base": MEDICAL_TINY},
        "loss": {"name": "nig", "base": {"name": "medical_matting"}},
        "split": {"scheme": "kfold", "k": 2},
        "data": {"augment": False},
        "optim": {"batch_size": 2, "epochs": 1, "lr": 1e-3},
        "eval": {"num_samples": 3, "every": 0},
        "train": {"progress": False, "tensorboard": False, "num_threads": 1},
    })
    record = train(config, tmp_path / "run", samples=samples)
    assert len(record["cases"]) == 2 and math.isfinite(record["mean"]["whole"]["SAD"])
    model, _ = load_run(tmp_path / "run")
    prediction = predict(model, samples[0].image, num_samples=3)
    assert prediction["alpha"].shape == (24, 24) and 0 <= prediction["alpha"].min() <= prediction["alpha"].max() <= 1
