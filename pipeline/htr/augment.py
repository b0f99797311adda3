"""Batched, device-side augmentation of ink-high line/cell images (`N x 1 x H x W`, paper 0, ink 1).

Everything happens on the training device in a handful of tensor ops so a GPU is never starved by
CPU-side image work: slant, rotation, scale and shift (one affine grid), a smooth elastic warp,
stroke width (dilate/erode), blur, ink contrast, paper grey, noise and ruling lines. Each sample
keeps its own width: pixels past `widths[i]` stay 0 (batch padding).
"""

from __future__ import annotations


def augment_batch(images, widths, generator=None):  # (Tensor, Tensor) -> Tensor
    import torch
    import torch.nn.functional as F

    n, _, height, width = images.shape
    device = images.device

    def uniform(low: float, high: float, *shape: int):
        return torch.rand(*(shape or (n,)), device=device, generator=generator) * (high - low) + low

    # slant (shear), small rotation, scale and vertical shift in one affine map (normalised coords)
    shear, angle = uniform(-0.35, 0.35), uniform(-0.03, 0.03)
    scale, shift = uniform(0.85, 1.12), uniform(-0.08, 0.08)
    aspect = width / height
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = scale * torch.cos(angle)
    theta[:, 0, 1] = (shear - torch.sin(angle) * scale) / aspect
    theta[:, 1, 0] = torch.sin(angle) * scale * aspect
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, 1, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # elastic warp: a coarse random displacement field, smoothly upsampled
    coarse = torch.randn(n, 2, 3, max(2, width // 24), device=device, generator=generator) * 0.025
    coarse[:, 0] *= height / width  # keep x displacements small in normalised units of a long line
    grid = grid + F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # stroke width: dilate a third, erode a sixth
    choice = uniform(0, 1).view(n, 1, 1, 1)
    dilated = F.max_pool2d(out, 3, 1, 1)
    eroded = -F.max_pool2d(-out, (2, 2), 1, 0)
    eroded = F.pad(eroded, (0, 1, 0, 1))
    out = torch.where(choice < 0.33, dilated, torch.where(choice > 0.83, eroded, out))
    # blur half of the samples
    kernel = torch.tensor([0.25, 0.5, 0.25], device=device)
    kernel = (kernel[:, None] * kernel[None, :]).view(1, 1, 3, 3)
    blurred = F.conv2d(out, kernel, padding=1)
    out = torch.where(uniform(0, 1).view(n, 1, 1, 1) < 0.5, blurred, out)

    # ruling lines near the top or bottom edge for a fifth of the samples
    rows = torch.arange(height, device=device).view(1, height, 1)
    row = torch.where(uniform(0, 1) < 0.5, uniform(0, 3), uniform(height - 4, height - 1)).round().view(n, 1, 1)
    ruled = ((rows == row) & (uniform(0, 1) < 0.2).view(n, 1, 1)).float().unsqueeze(1) * uniform(0.3, 0.7).view(n, 1, 1, 1)
    out = torch.maximum(out, ruled)

    # ink contrast, paper grey and noise, only inside each sample's own width
    out = out * uniform(0.55, 1.0).view(n, 1, 1, 1) + uniform(0.0, 0.12).view(n, 1, 1, 1)
    out = out + torch.randn(out.shape, device=device, generator=generator) * uniform(0.0, 0.06).view(n, 1, 1, 1)
    inside = (torch.arange(width, device=device).view(1, 1, 1, width) < widths.view(n, 1, 1, 1)).float()
    return (out * inside).clamp(0, 1)
