"""The named protocols: their settings, input sizes, and every resize around the propagation, pinned
against OpenCV and Pillow (the libraries the reference code calls) and against hand-computed values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.nearest import nearest_indices, resize_ids
from evaluation.resize import labels_to_grid, norm_mask, resize_uint8, soft_to_ids, to_input
from evaluation.settings import PROTOCOLS, PropagationSettings, eval_size, protocol_settings


def test_protocols_fix_the_reference_settings() -> None:
    cropmae = protocol_settings("cropmae")
    assert cropmae == PropagationSettings() == protocol_settings()
    assert (cropmae.queue, cropmae.pad_first_frame, cropmae.radius, cropmae.window, cropmae.topk,
            cropmae.temperature, cropmae.fixed_size) == (20, True, 20.0, "circle", 7, 0.7, (480, 880))
    assert not cropmae.window_on_first_frame and cropmae.label_downsample == "bilinear"
    assert cropmae.output_resize == "nearest" and cropmae.first_frame_output == "round-trip"
    jhmdb = protocol_settings("cropmae", task="jhmdb")
    assert jhmdb.fixed_size == (320, 320) and (jhmdb.pose_placement, jhmdb.pose_topk) == ("int", 5)
    vip = protocol_settings("cropmae", task="vip")
    assert (vip.long_side, vip.fixed_size, vip.topk, vip.output_resize) == (880, None, 10, "nearest-centre")
    dino = protocol_settings("dino")
    assert (dino.queue, dino.pad_first_frame, dino.radius, dino.window, dino.window_on_first_frame, dino.topk,
            dino.temperature) == (7, False, 12.0, "square", True, 5, 0.1)
    assert (dino.label_downsample, dino.norm_mask, dino.output_resize, dino.short_side, dino.size_multiple) == \
        ("nearest-centre", True, "nearest-centre", 480, 64)
    assert dino.input_std[0] == 0.228 and dino.resize_uint8 and dino.keep_ties and not cropmae.keep_ties
    assert protocol_settings("dino", topk=9).topk == 9 and protocol_settings("dino", topk=9).protocol == "dino"
    assert set(PROTOCOLS) == {"cropmae", "dino"}
    assert "protocol" in cropmae.to_dict() and cropmae.to_dict()["temperature"] == 0.7


def test_bad_protocols_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown protocol 'mae'"):
        protocol_settings("mae")
    with pytest.raises(ValueError, match="unknown task"):
        protocol_settings("dino", task="kinetics")
    with pytest.raises(TypeError, match="unknown propagation setting"):
        protocol_settings("dino", top_k=3)
    with pytest.raises(ValueError, match="window"):
        protocol_settings("dino", window="hexagon")


def test_input_sizes_follow_each_reference() -> None:
    cropmae, dino = protocol_settings("cropmae"), protocol_settings("dino")
    assert eval_size(480, 854, cropmae, 16) == (480, 880) == eval_size(240, 428, cropmae, 16)
    assert eval_size(480, 854, dino, 16) == (480, 832)
    assert eval_size(480, 910, dino, 16) == (480, 896)
    assert eval_size(480, 1152, dino, 16) == (480, 1152)
    assert eval_size(854, 480, dino, 16) == (832, 480)
    assert eval_size(240, 320, protocol_settings("cropmae", task="jhmdb"), 16) == (320, 320)
    vip = protocol_settings("cropmae", task="vip")
    assert eval_size(480, 640, vip, 16) == (640, 880)                       # int(480·880/640) = 660 → 640
    assert eval_size(640, 480, vip, 16) == (880, 640)
    native = protocol_settings("cropmae", fixed_size=None, size_multiple=16)
    assert eval_size(240, 428, native, 16) == (240, 416)


SIZES = [(480, 854), (480, 910), (480, 1152), (480, 880), (480, 832), (30, 52), (30, 55), (240, 428), (64, 96)]


@pytest.mark.parametrize("src", SIZES)
def test_nearest_rules_equal_cv2_and_pil_pixel_for_pixel(src: tuple[int, int]) -> None:
    ids = np.random.default_rng(sum(src)).integers(0, 255, src).astype(np.uint8)
    for dst in SIZES:
        cv2_out = cv2.resize(ids, dst[::-1], interpolation=cv2.INTER_NEAREST)
        pil_out = np.array(Image.fromarray(ids).resize(dst[::-1], Image.NEAREST))
        assert (resize_ids(ids, dst, "nearest") == cv2_out).all(), dst
        assert (resize_ids(ids, dst, "nearest-centre") == pil_out).all(), dst
    # the centre rule samples the middle of each cell: 854 → 52 takes pixel 8 of the first 16.4-pixel cell
    assert nearest_indices(52, 854, "nearest-centre")[0] == 8 and nearest_indices(52, 854, "nearest")[0] == 0


def test_norm_mask_rescales_each_positive_channel_to_zero_one() -> None:
    labels = torch.tensor([[[0.2, 0.4], [0.6, 0.2]],
                           [[0.0, 0.0], [0.0, 0.0]],
                           [[0.5, 0.5], [1.0, 0.75]]])
    out = norm_mask(labels.clone())
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    assert torch.equal(out[1], labels[1])                                      # max 0: untouched
    assert torch.allclose(out[2], torch.tensor([[0.0, 0.0], [1.0, 0.5]]))


def test_first_frame_labels_reach_the_grid_as_each_protocol_does() -> None:
    ids = torch.zeros(48, 80, dtype=torch.long)
    ids[:, 40:] = 1                                                            # right half is object 1
    ids[0:16, 0:16] = 2
    cropmae = protocol_settings("cropmae")
    grid = labels_to_grid(ids, 3, (48, 96), (3, 6), cropmae)                   # nearest to 96 wide, then bilinear
    onehot = np.eye(3, dtype=np.float32)[cv2.resize(ids.numpy().astype(np.uint8), (96, 48),
                                                    interpolation=cv2.INTER_NEAREST)]
    expected = cv2.resize(onehot, (6, 3), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    assert np.allclose(grid.numpy(), expected, atol=1e-6)
    dino = labels_to_grid(ids, 3, (48, 64), (3, 4), protocol_settings("dino"))
    small = np.array(Image.fromarray(ids.numpy().astype(np.uint8)).resize((4, 3), Image.NEAREST))
    assert torch.equal(dino.argmax(0), torch.from_numpy(small).long()) and set(dino.unique().tolist()) == {0.0, 1.0}


def test_soft_labels_go_to_the_input_size_then_argmax_then_nearest_to_the_annotation() -> None:
    soft = torch.softmax(torch.randn(3, 3, 5, generator=torch.Generator().manual_seed(1)), dim=0)
    settings = protocol_settings("cropmae")
    out = soft_to_ids(soft, (48, 80), (45, 71), settings)
    up = cv2.resize(soft.permute(1, 2, 0).numpy(), (80, 48))                  # CropMAE's dump_predictions
    expected = cv2.resize(up.argmax(-1).astype(np.uint8), (71, 45), interpolation=cv2.INTER_NEAREST)
    assert out.dtype == torch.uint8 and (out.numpy() == expected).all()
    dino = soft_to_ids(soft, (48, 80), (45, 71), protocol_settings("dino"))
    assert dino.shape == (45, 71)


def test_frames_are_resized_as_float_or_as_8_bit_images() -> None:
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 30, 50, 3), dtype=np.uint8))
    cropmae = to_input(frames, (32, 64), protocol_settings("cropmae"))
    reference = cv2.resize(frames[0].numpy().astype(np.float32) / 255.0, (64, 32))  # CropMAE: float image
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    assert np.abs(cropmae[0].permute(1, 2, 0).numpy() - (reference - mean) / std).max() < 1e-5
    dino = to_input(frames, (32, 64), protocol_settings("dino"))
    levels = (dino[0].permute(1, 2, 0).numpy() * np.array([0.228, 0.224, 0.225]) + mean) * 255  # DINO: std 0.228
    eight_bit = cv2.resize(frames[0].numpy(), (64, 32))                        # DINO: cv2 on the uint8 image
    assert np.abs(levels - eight_bit).max() < 1e-3


@pytest.mark.parametrize(("src", "dst"), [((240, 428), (480, 832)), ((480, 854), (480, 832)), ((480, 910), (480, 896)),
                                          ((240, 320), (480, 640)), ((960, 1708), (480, 854)), ((37, 53), (20, 90))])
def test_8_bit_resize_is_bit_exact_with_cv2(src: tuple[int, int], dst: tuple[int, int]) -> None:
    image = np.random.default_rng(sum(src)).integers(0, 256, (*src, 3), dtype=np.uint8)
    ours = resize_uint8(torch.from_numpy(image).permute(2, 0, 1), dst).permute(1, 2, 0).numpy()
    assert np.array_equal(ours, cv2.resize(image, dst[::-1], interpolation=cv2.INTER_LINEAR))
