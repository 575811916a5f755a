"""Matching head: released parameter names, strict loading, forward and loss behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from omama.model.head import MatchingHead, count_parameters, load_checkpoint, matching_loss


def official_state(dst_rows: int, src_rows: int) -> dict:
    """A state dict spelled out with the released checkpoint's names and shapes."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    s = {"pos_embed_T": t(1, dst_rows, 768), "pos_embed_Q": t(1, src_rows, 768)}
    for name in ("query", "key", "value", "project.0", "mlp.0", "mlp.2"):
        s[f"CROSS_context_attn.{name}.weight"] = t(768, 768)
        s[f"CROSS_context_attn.{name}.bias"] = t(768)
    for name in ("norm_input", "norm_output"):
        s[f"CROSS_context_attn.{name}.weight"] = 1 + t(768)
        s[f"CROSS_context_attn.{name}.bias"] = t(768)
    for i, (o, n) in {0: (768, 2304), 2: (768, 768), 4: (768, 768)}.items():
        s[f"mlp.mlp.{i}.weight"], s[f"mlp.mlp.{i}.bias"] = t(o, n), t(o)
    for i, (o, n) in {0: (768, 1536), 2: (256, 768), 4: (128, 256), 6: (2, 128)}.items():
        s[f"mlp_visible.{i}.weight"], s[f"mlp_visible.{i}.bias"] = t(o, n), t(o)
    return s


def test_default_head_has_about_11_8m_parameters():
    head = MatchingHead(src_grid=(38, 68), dst_grid=(50, 50), in_channels=768)
    n = count_parameters(head)
    assert 11.6e6 < n < 12.0e6
    assert head.pos_embed_T.shape == (1, 2500, 768) and head.pos_embed_Q.shape == (1, 38 * 68, 768)
    assert head.projection is None


def test_official_checkpoint_loads_strictly_and_drives_the_forward(tmp_path):
    state = official_state(dst_rows=4 * 4, src_rows=3 * 5)
    path = tmp_path / "official.pt"
    torch.save(state, path)
    head = load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4)), path)
    for k, v in state.items():
        assert torch.equal(head.state_dict()[k], v)
    torch.manual_seed(1)
    src_desc, dst_desc = torch.randn(2, 1536), torch.randn(2, 6, 1536)
    src_grid, dst_grid = torch.randn(2, 768, 3, 5), torch.randn(2, 768, 4, 4)
    scores = head(src_desc, src_grid, dst_desc, dst_grid)
    assert scores.shape == (2, 6)

    def attend(desc, grid, pos):  # the published block, written out once more
        ln = lambda x, n: F.layer_norm(
            x, (768,), state[f"CROSS_context_attn.{n}.weight"], state[f"CROSS_context_attn.{n}.bias"]
        )
        lin = lambda x, n: F.linear(x, state[f"CROSS_context_attn.{n}.weight"], state[f"CROSS_context_attn.{n}.bias"])
        tok = ln(grid.flatten(2).transpose(1, 2) + pos, "norm_input")
        d = ln(desc, "norm_input")
        heads = lambda x: x.view(x.shape[0], x.shape[1], 4, 192).transpose(1, 2)
        a = torch.softmax(heads(lin(d, "query")) @ heads(lin(tok, "key")).transpose(-1, -2) / 192**0.5, -1)
        y = lin((a @ heads(lin(tok, "value"))).transpose(1, 2).reshape(desc.shape[0], desc.shape[1], 768), "project.0")
        return y + lin(F.gelu(lin(ln(y, "norm_output"), "mlp.0")), "mlp.2")

    def mlp(x):
        for i in (0, 2, 4):
            x = F.linear(x, state[f"mlp.mlp.{i}.weight"], state[f"mlp.mlp.{i}.bias"])
            x = F.relu(x) if i < 4 else x
        return F.normalize(x, dim=-1)

    q = mlp(torch.cat([attend(src_desc[:, None, :768], dst_grid, state["pos_embed_T"]), src_desc[:, None]], -1))
    t = mlp(torch.cat([attend(dst_desc[..., :768], src_grid, state["pos_embed_Q"]), dst_desc], -1))
    torch.testing.assert_close(scores, F.cosine_similarity(q, t, dim=-1), atol=1e-5, rtol=1e-5)


def test_checkpoint_for_another_grid_names_the_tensor_and_both_shapes(tmp_path):
    path = tmp_path / "official.pt"
    torch.save(official_state(dst_rows=2500, src_rows=38 * 68), path)
    with pytest.raises(ValueError) as e:
        load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4)), path)
    msg = str(e.value)
    assert "pos_embed_T" in msg and "(1, 2500, 768)" in msg and "(1, 16, 768)" in msg
    assert "pos_embed_Q" in msg and "(1, 2584, 768)" in msg and "(1, 15, 768)" in msg


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    state = official_state(dst_rows=16, src_rows=15)
    del state["mlp_visible.6.bias"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing tensor 'mlp_visible.6.bias'(.|\n)*unexpected tensor 'extra.weight'"):
        load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4)), path)
    with pytest.raises(FileNotFoundError, match="missing checkpoint"):
        load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4)), tmp_path / "nope.pt")


def test_projection_for_other_channel_counts_is_saved_with_the_head(tmp_path):
    torch.manual_seed(0)
    head = MatchingHead(src_grid=(3, 5), dst_grid=(4, 4), in_channels=384)
    state = head.state_dict()
    assert state["projection.weight"].shape == (768, 384, 1, 1)
    assert torch.count_nonzero(state["projection.bias"]) == 0
    bound = (6 / (384 + 768)) ** 0.5
    assert state["projection.weight"].abs().max() <= bound
    assert state["projection.weight"].std() > bound / 3
    torch.save(state, tmp_path / "p.pt")
    other = load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4), in_channels=384), tmp_path / "p.pt")
    x = torch.randn(1, 384, 4, 4)
    assert torch.equal(other.project(x), head.project(x))
    with pytest.raises(ValueError, match="projection.weight"):
        load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4), in_channels=2048), tmp_path / "p.pt")


def test_released_head_starts_a_backbone_swap_with_a_fresh_projection(tmp_path, caplog):
    state = official_state(dst_rows=16, src_rows=15)
    torch.save(state, tmp_path / "official.pt")
    torch.manual_seed(0)
    fresh = MatchingHead(src_grid=(3, 5), dst_grid=(4, 4), in_channels=384)
    torch.manual_seed(0)
    head = load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4), in_channels=384), tmp_path / "official.pt")
    for k, v in state.items():
        assert torch.equal(head.state_dict()[k], v)
    assert torch.equal(head.projection.weight, fresh.projection.weight)
    assert "no projection" in caplog.text
    del state["mlp_visible.6.bias"]  # everything else still loads strictly
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing tensor 'mlp_visible.6.bias'"):
        load_checkpoint(MatchingHead(src_grid=(3, 5), dst_grid=(4, 4), in_channels=384), tmp_path / "partial.pt")


def test_loss_ignores_absent_objects_and_padded_slots():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, -0.3]])
    target = torch.tensor([0, 1])
    full = matching_loss(scores, target, torch.tensor([1.0, 1.0]))
    ref = F.cross_entropy(scores / 0.07, target)
    torch.testing.assert_close(full, ref)
    only_first = matching_loss(scores, target, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(only_first, F.cross_entropy(scores[:1] / 0.07, target[:1]) / 2)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    padded = matching_loss(scores, target, torch.tensor([1.0, 0.0]), valid)
    torch.testing.assert_close(padded, F.cross_entropy(scores[:1, :2] / 0.07, target[:1]) / 2)
    changed = scores.clone()
    changed[0, 2] = 5.0
    torch.testing.assert_close(matching_loss(changed, target, torch.tensor([1.0, 0.0]), valid), padded)


def test_a_shared_destination_embeds_each_distinct_source_grid_once_with_the_same_values_and_gradients():
    """Five sources from two cameras (two grids) and one destination: the candidates attend to each grid once; the
    embeddings and the gradients equal those of the plain expansion over every source."""
    from omama.model.descriptors import describe
    from omama.model.head import candidate_embeddings

    torch.manual_seed(0)
    head = MatchingHead((3, 5), (4, 4), in_channels=8)
    grids = torch.randn(2, 8, 3, 5)
    src_feat = grids[[0, 1, 0, 0, 1]]
    dst_feat = torch.randn(1, 8, 4, 4)
    src_masks, cand = torch.rand(5, 1, 48, 80) > 0.7, torch.rand(1, 6, 64, 64) > 0.7

    def loss_and_grads(q, t):
        head.zero_grad()
        ((q[:, 0, None] * t).sum(-1) ** 2).sum().backward()
        return [p.grad.clone() for p in head.parameters() if p.grad is not None]

    q, t = candidate_embeddings(head, src_feat, dst_feat, src_masks, cand)
    src, dst = head.project(src_feat), head.project(dst_feat)
    q0, t0 = head.embeddings(
        describe(src, src_masks)[:, 0], src, describe(dst, cand).expand(5, -1, -1), dst.expand(5, -1, -1, -1)
    )
    assert q.shape == q0.shape == (5, 1, 768) and t.shape == t0.shape == (5, 6, 768)
    assert torch.allclose(q, q0, atol=1e-6) and torch.allclose(t, t0, atol=1e-6)
    assert torch.equal(t[0], t[2]) and torch.equal(t[1], t[4]) and not torch.equal(t[0], t[1])
    for g, g0 in zip(loss_and_grads(q, t), loss_and_grads(q0, t0)):
        assert torch.allclose(g, g0, atol=1e-5)
