"""deform_conv2d against a direct per-pixel reference, plus gradients and export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdmi.model.ops import deform_conv2d


def _bilinear_zero_pad(image: np.ndarray, y: float, x: float) -> float:
    """Bilinear sample of a 2-D array, each corner outside the image reading zero."""
    h, w = image.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return 0.0
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    ly, lx = y - y0, x - x0
    total = 0.0
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < h and 0 <= xx < w:
                total += wy * wx * image[yy, xx]
    return total


def reference_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask):
    """Straight from the DCNv2 definition, one output pixel and kernel tap at a time."""
    x, offset, weight = x.double().numpy(), offset.double().numpy(), weight.double().numpy()
    mask = None if mask is None else mask.double().numpy()
    b, cin, _, _ = x.shape
    cout, cin_g, kh, kw = weight.shape
    groups, taps = cin // cin_g, kh * kw
    og = offset.shape[1] // (2 * taps)
    ho, wo = offset.shape[2], offset.shape[3]
    out = np.zeros((b, cout, ho, wo))
    for n in range(b):
        for c in range(cin):
            g_off = c // (cin // og)
            g_conv = c // cin_g
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oy in range(ho):
                        for ox in range(wo):
                            dy = offset[n, 2 * (g_off * taps + k), oy, ox]
                            dx = offset[n, 2 * (g_off * taps + k) + 1, oy, ox]
                            y = oy * stride[0] - padding[0] + i * dilation[0] + dy
                            xx = ox * stride[1] - padding[1] + j * dilation[1] + dx
                            v = _bilinear_zero_pad(x[n, c], y, xx)
                            if mask is not None:
                                v *= mask[n, g_off * taps + k, oy, ox]
                            co = slice(g_conv * (cout // groups), (g_conv + 1) * (cout // groups))
                            out[n, co, oy, ox] += weight[co, c - g_conv * cin_g, i, j] * v
    if bias is not None:
        out += bias.double().numpy()[None, :, None, None]
    return out


CASES = [
    # cin, cout, kernel, stride, padding, dilation, groups, offset_groups, use_mask
    (3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True),
    (4, 6, (3, 3), (2, 2), (1, 1), (1, 1), 2, 1, True),
    (4, 4, (3, 2), (1, 2), (2, 0), (2, 1), 1, 2, True),
    (6, 3, (1, 3), (2, 1), (0, 1), (1, 3), 3, 3, False),
    (4, 2, (2, 2), (1, 1), (0, 0), (1, 1), 2, 4, True),
]


@pytest.mark.parametrize("case", CASES)
def test_matches_reference(case) -> None:
    cin, cout, (kh, kw), stride, padding, dilation, groups, og, use_mask = case
    gen = torch.Generator().manual_seed(hash(case) % 2**31)
    h, w = 7, 6
    x = torch.randn(2, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin // groups, kh, kw, generator=gen)
    bias = torch.randn(cout, generator=gen)
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    # offsets large enough to leave the image often, to exercise the zero padding
    offset = torch.randn(2, 2 * og * kh * kw, ho, wo, generator=gen) * 2.5
    mask = torch.rand(2, og * kh * kw, ho, wo, generator=gen) if use_mask else None
    out = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    expected = reference_deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_zero_offsets_and_unit_mask_equal_conv2d() -> None:
    x, weight, bias = torch.randn(2, 4, 9, 8), torch.randn(6, 2, 3, 3), torch.randn(6)
    offset = torch.zeros(2, 18, 5, 4)
    mask = torch.ones(2, 9, 5, 4)
    out = deform_conv2d(x, offset, weight, bias, stride=2, padding=1, dilation=1, mask=mask)
    torch.testing.assert_close(
        out, F.conv2d(x, weight, bias, stride=2, padding=1, groups=2), rtol=1e-5, atol=1e-5
    )


@pytest.mark.slow
def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    # keep sampling points off integer coordinates, where bilinear sampling has kinks
    offset = (torch.rand(1, 2 * 2 * 9, 5, 5, generator=gen, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.rand(1, 2 * 9, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(x, offset, weight, bias, mask):
        return deform_conv2d(x, offset, weight, bias, stride=1, padding=1, dilation=1, mask=mask)

    assert torch.autograd.gradcheck(fn, (x, offset, weight, bias, mask), eps=1e-6, atol=1e-5)


def test_scripts_with_torchscript() -> None:
    scripted = torch.jit.script(deform_conv2d)
    x, weight = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    offset, mask = torch.randn(1, 18, 6, 6), torch.rand(1, 9, 6, 6)
    torch.testing.assert_close(
        scripted(x, offset, weight, None, 1, 1, 1, mask),
        deform_conv2d(x, offset, weight, None, 1, 1, 1, mask),
    )


def test_bad_offset_shape_is_a_clear_error() -> None:
    x, weight = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="offset has 17 channels"):
        deform_conv2d(x, torch.randn(1, 17, 6, 6), weight, padding=1)
    with pytest.raises(ValueError, match="output is 6x6"):
        deform_conv2d(x, torch.randn(1, 18, 5, 6), weight, padding=1)


class _DeformLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 2, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = x[:, :2].repeat(1, 18, 1, 1)  # 2 offset groups x 9 taps x (dy, dx)
        mask = torch.sigmoid(x[:, 2:3]).repeat(1, 18, 1, 1)
        return deform_conv2d(x[:, :4], offset, self.weight, None, 1, 1, 1, mask)


@pytest.mark.slow
def test_exports_to_onnx_and_matches_in_onnxruntime(tmp_path) -> None:
    from tdmi.model.export import export_model, relative_error, run_exported

    layer = _DeformLayer().eval()
    path = export_model(layer, torch.randn(2, 4, 9, 7), tmp_path / "dcn.onnx", "onnx")
    x = torch.randn(3, 4, 9, 7) * 2
    with torch.no_grad():
        reference = layer(x).numpy()
    assert relative_error(run_exported(path, "onnx", x), reference) < 1e-5
