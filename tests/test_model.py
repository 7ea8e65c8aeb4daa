"""SiamMAE network: shapes of every variant, masking counts, what the loss looks at, overfitting, encode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.config import MODEL_NAMES, ModelConfig, model_config
from model.masking import num_visible, random_masking
from model.pos_embed import sincos_2d
from model.siammae import SiamMAE


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on shared cores: more intra-op threads only add spin-waiting (10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


VARIANTS = [(e, d) for e in ("siamese", "joint") for d in ("cross-self", "cross", "joint")]


def tiny(**overrides) -> ModelConfig:
    return model_config("vit_micro_patch8", input_size=32, **overrides)   # 4 x 4 = 16 patches


def frames(batch: int = 2, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g), torch.randn(batch, 3, size, size, generator=g)


@pytest.mark.parametrize("encoder,decoder", VARIANTS)
def test_every_encoder_decoder_pair_gives_loss_pred_and_mask(encoder: str, decoder: str) -> None:
    torch.manual_seed(0)
    model = SiamMAE(tiny(encoder=encoder, decoder=decoder))
    f1, f2 = frames()
    out = model(f1, f2)
    assert out.pred.shape == (2, 16, 8 * 8 * 3)
    assert out.mask.shape == (2, 16)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []                       # every weight takes part (DDP needs no unused-param search)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95])
@pytest.mark.parametrize("num_patches", [16, 49, 196])
def test_exactly_round_n_times_one_minus_ratio_f2_patches_stay_visible(ratio: float, num_patches: int) -> None:
    keep = round(num_patches * (1 - ratio))
    assert num_visible(num_patches, ratio) == keep
    m = random_masking(3, num_patches, ratio, "cpu")
    assert (m.mask.sum(dim=1) == num_patches - keep).all()
    assert m.ids_keep.shape == (3, keep)
    visible = torch.zeros(3, num_patches).scatter_(1, m.ids_keep, 1.0)
    assert torch.equal(visible, 1 - m.mask)   # the kept ids are exactly the unmasked patches


@pytest.mark.parametrize("encoder", ["siamese", "joint"])
def test_the_encoder_sees_only_the_visible_f2_tokens(encoder: str) -> None:
    model = SiamMAE(tiny(encoder=encoder, mask_ratio=0.75))
    f1, f2 = frames()
    m = random_masking(2, 16, 0.75, "cpu")
    x1, x2 = model.forward_encoder(f1, f2, m)
    assert x1.shape == (2, 1 + 16, 96)
    assert x2.shape == (2, 1 + 4, 96)         # CLS + round(16 * 0.25)


def test_masks_differ_between_samples_and_calls() -> None:
    model = SiamMAE(tiny())
    f1, f2 = frames(batch=8)
    a, b = model(f1, f2).mask, model(f1, f2).mask
    assert not torch.equal(a, b)
    assert len({tuple(row.tolist()) for row in a}) > 1


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_ignores_target_pixels_of_visible_patches_but_not_masked_ones(norm_pix: bool) -> None:
    model = SiamMAE(tiny(norm_pix_loss=norm_pix))
    _, f2 = frames(batch=2)
    pred = torch.randn(2, 16, 192)
    mask = torch.zeros(2, 16)
    mask[:, [1, 5, 10]] = 1                   # patches 1, 5, 10 masked; the rest visible
    base = model.forward_loss(f2, pred, mask)

    def with_patch_changed(index: int) -> torch.Tensor:
        changed = f2.clone()
        row, col = divmod(index, 4)
        changed[:, :, row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] = torch.rand(2, 3, 8, 8) * 5
        return model.forward_loss(changed, pred, mask)

    for visible in (0, 2, 15):
        assert torch.equal(with_patch_changed(visible), base)
    assert not torch.allclose(with_patch_changed(5), base)      # the same edit on a masked patch counts


def test_loss_is_the_mean_over_masked_patches_only() -> None:
    model = SiamMAE(tiny(norm_pix_loss=False))
    f2 = torch.zeros(1, 3, 32, 32)
    pred = torch.zeros(1, 16, 192)
    pred[0, 3] = 2.0                          # error 4 per pixel on patch 3 (masked)
    pred[0, 7] = 9.0                          # huge error on patch 7 (visible): must not count
    mask = torch.zeros(1, 16)
    mask[0, [3, 4]] = 1
    assert model.forward_loss(f2, pred, mask).item() == pytest.approx((4.0 + 0.0) / 2)


def test_patchify_and_unpatchify_are_inverse() -> None:
    model = SiamMAE(tiny())
    x = torch.randn(2, 3, 32, 48)
    assert torch.equal(model.unpatchify(model.patchify(x), grid_h=4), x)


def test_a_tiny_model_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = SiamMAE(tiny(mask_ratio=0.75))
    g = torch.Generator().manual_seed(0)     # smooth frames, f2 = f1 moved 8 pixels (one patch) left
    scene = F.interpolate(torch.randn(2, 3, 6, 8, generator=g), size=(32, 40), mode="bilinear")
    f1, f2 = scene[..., :32], scene[..., 8:]
    m = random_masking(2, 16, 0.75, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(200):
        loss = model(f1, f2, masking=m).loss
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10, (first, loss.item())


def test_encode_gives_normed_patch_features_at_any_multiple_of_the_patch() -> None:
    model = SiamMAE(tiny()).eval()
    feats = model.encode(torch.randn(2, 3, 48, 80))
    assert feats.shape == (2, 6, 10, 96)
    # after the final LayerNorm (unit weight, zero bias at init): zero mean, unit variance per token
    assert torch.allclose(feats.mean(-1), torch.zeros(2, 6, 10), atol=1e-4)
    same = model.encode(torch.randn(1, 3, 32, 32))
    assert same.shape == (1, 4, 4, 96)


def test_position_embeddings_are_fixed_and_resampled_for_other_grids() -> None:
    model = SiamMAE(tiny())
    assert "pos_embed" not in dict(model.named_parameters())
    assert torch.equal(model.pos_embed, sincos_2d(96, 4, 4))
    wide = sincos_2d(96, 4, 8, base_grid=4)[0, 1:].reshape(4, 8, 96)
    base = model.pos_embed[0, 1:].reshape(4, 4, 96)
    assert torch.allclose(wide[:, 0], base[:, 0])          # the edges map onto the edges
    assert torch.allclose(wide[:, -1], base[:, -1])
    assert torch.allclose(wide[0, 0, 48:], base[0, 0, 48:])  # rows unchanged when only the width grows


def test_named_sizes_and_bad_names() -> None:
    assert set(MODEL_NAMES) >= {"vit_tiny_patch16", "vit_small_patch16", "vit_base_patch16", "vit_small_patch8"}
    s16 = model_config("vit_small_patch16")
    assert (s16.embed_dim, s16.depth, s16.num_heads, s16.patch_size) == (384, 12, 6, 16)
    assert (s16.decoder_embed_dim, s16.decoder_depth, s16.decoder_num_heads) == (512, 8, 16)
    assert model_config("vit_small_patch16", decoder_depth=4).decoder_depth == 4
    assert ModelConfig.from_dict(s16.to_dict()) == s16
    with pytest.raises(KeyError, match="unknown model"):
        model_config("vit_huge_patch3")
    with pytest.raises(ValueError, match="decoder"):
        model_config("vit_tiny_patch16", decoder="crosss")
    with pytest.raises(ValueError, match="multiple of patch"):
        model_config("vit_tiny_patch16", input_size=100)
