"""segment-anything's prompt decoder, minus the work that does not depend on the prompt.

``SamPredictor.predict`` reruns the whole ``MaskDecoder`` per click, then upsamples every
candidate mask to the full photo. Three shortcuts, each compared against SAM's own code in
tests/test_assist.py:

- :class:`DecoderState`: in the first two-way attention block the image side's inputs are
  the image embedding and its positional encoding only, so the three 4096x256 -> 128
  projections made from them are computed once per image (exact: same operations).
- In the other attention layers one side has only the ~7 prompt tokens, so the image
  side's projections are folded into the tokens' side (``(q W_k) k^T`` rather than
  ``q (k W_k^T)^T``): the same sums in another order, float32 rounding apart (logits
  within ~1e-6 of SAM's; masks equal but for a pixel whose logit is that close to 0).
- :func:`upsample_window`: the best candidate is upsampled alone, and only where it can be
  positive (exact).

Tensors: image embedding (1, 256, 64, 64) float32; logits (1, C, 256, 256) float32.
"""

from __future__ import annotations

import math

import numpy as np


def _heads(x, n: int):
    """(B, T, C) -> (B, n, T, C / n), as ``Attention._separate_heads``."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _softmax_short(x):
    """Softmax over a short last axis (the ~7 prompt tokens): torch's kernel takes about 5x
    longer than these four passes over (N, heads, tokens)."""
    e = (x - x.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


def _tokens_to_image(attn, q_in, k_in, v_in):
    """``Attention(q=q_in, k=k_in, v=v_in)`` for T prompt tokens attending to N image tokens
    (q_in (B, T, C), k_in and v_in (B, N, C)). The key and value projections are folded into
    the T queries, (q W_k) k_in^T and (a v_in) W_v, so the N x C image side is only read
    twice instead of projected twice: the same sums in another order."""
    import torch

    b, t, c = q_in.shape
    n, h = k_in.shape[1], attn.num_heads
    d = attn.internal_dim // h
    q = _heads(attn.q_proj(q_in), h)  # (B, h, T, d)
    g = q @ attn.k_proj.weight.view(h, d, c)  # (B, h, T, C)
    logits = (g.reshape(b, h * t, c) @ k_in.transpose(1, 2)).view(b, h, t, n)
    logits = logits + q @ attn.k_proj.bias.view(h, d, 1)
    a = torch.softmax(logits / math.sqrt(d), dim=-1)
    av = (a.reshape(b, h * t, n) @ v_in).view(b, h, t, c)
    o = av @ attn.v_proj.weight.view(h, d, c).transpose(1, 2) + attn.v_proj.bias.view(h, 1, d)
    return attn.out_proj(o.transpose(1, 2).reshape(b, t, h * d))


def _image_to_tokens(attn, q_in, k_in, v_in, q_heads=None):
    """``Attention(q=q_in, k=k_in, v=v_in)`` for N image tokens attending to T prompt tokens
    (q_in (B, N, C), k_in and v_in (B, T, C)). The query and output projections are folded
    into the T keys and values; ``q_heads`` (B, h, N, d), the projected queries, when cached."""
    b, t, c = k_in.shape
    n = q_in.shape[1] if q_heads is None else q_heads.shape[2]
    h = attn.num_heads
    d = attn.internal_dim // h
    k = _heads(attn.k_proj(k_in), h)  # (B, h, T, d)
    v = _heads(attn.v_proj(v_in), h)
    if q_heads is None:
        m = attn.q_proj.weight.view(h, d, c).transpose(1, 2) @ k.transpose(2, 3)  # (B,h,C,T)
        bias = attn.q_proj.bias.view(1, h, 1, d) @ k.transpose(2, 3)  # (B, h, 1, T)
        logits = q_in @ m.permute(0, 2, 1, 3).reshape(b, c, h * t) + bias.reshape(b, 1, h * t)
        logits = logits.view(b, n, h, t)
    else:
        logits = (q_heads @ k.transpose(2, 3)).transpose(1, 2)  # (B, N, h, T)
    a = _softmax_short(logits / math.sqrt(d))
    u = v @ attn.out_proj.weight.view(c, h, d).permute(1, 2, 0)  # (B, h, T, C)
    return a.reshape(b, n, h * t) @ u.reshape(b, h * t, c) + attn.out_proj.bias


def supports_cached_decoder(model) -> bool:
    """True for segment-anything's ``MaskDecoder`` with a ``TwoWayTransformer`` whose first
    block skips the query PE (ViT-B/L/H); anything else goes through ``mask_decoder``."""
    try:
        from segment_anything.modeling.transformer import TwoWayTransformer
    except ImportError:  # pragma: no cover - segment_anything is what built the model
        return False
    tr = getattr(model.mask_decoder, "transformer", None)
    return (
        isinstance(tr, TwoWayTransformer)
        and len(tr.layers) > 0
        and bool(tr.layers[0].skip_first_layer_pe)
    )


class DecoderState:
    """The prompt-independent part of ``MaskDecoder`` for one image embedding (no mask
    prompt, so the dense prompt embedding is the constant ``no_mask_embed``). About 10 MB."""

    def __init__(self, model, features, image_pe):
        self.model = model
        pe_mod = model.prompt_encoder
        # MaskDecoder.predict_masks: src = image embedding + dense prompt (batch of one)
        src = features + pe_mod.no_mask_embed.weight.reshape(1, -1, 1, 1)
        self.shape = tuple(src.shape)
        # TwoWayTransformer.forward's flattening, then block 0's image-side projections
        self.keys0 = src.flatten(2).permute(0, 2, 1)
        self.key_pe = image_pe.flatten(2).permute(0, 2, 1)
        block = model.mask_decoder.transformer.layers[0]
        k = self.keys0 + self.key_pe
        t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
        self.t2i_k = _heads(t2i.k_proj(k), t2i.num_heads)
        self.t2i_v = _heads(t2i.v_proj(self.keys0), t2i.num_heads)
        self.i2t_q = _heads(i2t.q_proj(k), i2t.num_heads)

    def decode(self, sparse, multimask_output: bool):
        """``MaskDecoder.forward`` for sparse prompt embeddings (1, N, 256): returns
        low-res logits (1, C, 256, 256) and predicted IoUs (1, C), C = 3 or 1."""
        import torch

        dec = self.model.mask_decoder
        tr = dec.transformer
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        # TwoWayAttentionBlock.forward of block 0 (skip_first_layer_pe) with the cached parts
        block = tr.layers[0]
        queries = block.norm1(block.self_attn(q=tokens, k=tokens, v=tokens))
        t2i = block.cross_attn_token_to_image
        q = _heads(t2i.q_proj(queries + tokens), t2i.num_heads)
        a = torch.softmax(q @ self.t2i_k.transpose(2, 3) / math.sqrt(q.shape[-1]), dim=-1)
        o = (a @ self.t2i_v).transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)
        queries = block.norm2(queries + t2i.out_proj(o))
        queries = block.norm3(queries + block.mlp(queries))
        q = queries + tokens
        i2t = block.cross_attn_image_to_token
        keys = block.norm4(self.keys0 + _image_to_tokens(i2t, None, q, queries, self.i2t_q))
        # the other blocks (TwoWayAttentionBlock.forward with the PE) and the final attention
        for blk in tr.layers[1:]:
            q = queries + tokens
            queries = blk.norm1(queries + blk.self_attn(q=q, k=q, v=queries))
            q, k = queries + tokens, keys + self.key_pe
            attn_out = _tokens_to_image(blk.cross_attn_token_to_image, q, k, keys)
            queries = blk.norm2(queries + attn_out)
            queries = blk.norm3(queries + blk.mlp(queries))
            q = queries + tokens
            attn_out = _image_to_tokens(blk.cross_attn_image_to_token, k, q, queries)
            keys = blk.norm4(keys + attn_out)
        q, k = queries + tokens, keys + self.key_pe
        attn_out = _tokens_to_image(tr.final_attn_token_to_image, q, k, keys)
        queries = tr.norm_final_attn(queries + attn_out)
        # the rest of MaskDecoder.predict_masks and forward
        b, c, h, w = self.shape
        upscaled = dec.output_upscaling(keys.transpose(1, 2).view(b, c, h, w))
        mask_tokens = queries[:, 1 : 1 + dec.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = dec.iou_prediction_head(queries[:, 0, :])
        pick = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, pick], iou_pred[:, pick]


def upsample_window(
    model, logits, input_size: tuple[int, int], original_size: tuple[int, int]
) -> tuple[np.ndarray | None, tuple[int, int]]:
    """Threshold one candidate as ``Sam.postprocess_masks`` + ``> mask_threshold`` would,
    computing only the window where it can be positive.

    ``logits``: (1, 1, 256, 256) float tensor from the mask decoder. Returns a bool
    (h, w) numpy window of the original-size mask and its top-left (x, y) offset, or
    (None, (0, 0)) when no pixel is positive.

    Bilinear upsampling makes each output pixel a convex combination of at most 2x2 low-res
    logits, so outside the window around the low-res support (logits > threshold) nothing
    can pass the threshold. When the photo's long side is the encoder's 1024 (what the API
    sends), original size == input size, SAM's second resize is the identity, and the
    first one (a fixed x4 scale) gives bit-identical values on a low-res crop whose
    border is grown by 2 low-res pixels, 2 output pixels of which are trimmed. Other
    sizes fall back to ``postprocess_masks`` of the single best candidate.
    """
    import torch.nn.functional as F

    thr = model.mask_threshold
    pos = logits[0, 0] > thr
    rows = pos.any(1).nonzero()
    if len(rows) == 0:
        return None, (0, 0)
    if tuple(original_size) != tuple(input_size):
        full = model.postprocess_masks(logits, input_size, original_size)[0, 0] > thr
        return full.cpu().numpy(), (0, 0)
    cols = pos.any(0).nonzero()
    n_low, size = logits.shape[-1], model.image_encoder.img_size
    f = size // n_low  # 4 for SAM: 256 -> 1024
    r0, r1 = max(0, int(rows[0]) - 2), min(n_low, int(rows[-1]) + 3)
    c0, c1 = max(0, int(cols[0]) - 2), min(n_low, int(cols[-1]) + 3)
    up = F.interpolate(
        logits[..., r0:r1, c0:c1],
        ((r1 - r0) * f, (c1 - c0) * f),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    # output pixels next to a cut edge of the crop see clamped neighbours: trim them (an
    # edge of the full grid clamps the same way in SAM, so it is kept)
    t = f // 2
    y0, y1 = r0 * f + (t if r0 > 0 else 0), r1 * f - (t if r1 < n_low else 0)
    x0, x1 = c0 * f + (t if c0 > 0 else 0), c1 * f - (t if c1 < n_low else 0)
    y1, x1 = min(y1, input_size[0]), min(x1, input_size[1])
    if y1 <= y0 or x1 <= x0:
        return None, (0, 0)
    win = up[y0 - r0 * f : y1 - r0 * f, x0 - c0 * f : x1 - c0 * f] > thr
    return win.cpu().numpy(), (x0, y0)
