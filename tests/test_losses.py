import math

import pytest
import torch
import torch.nn.functional as F

from diffcl_lite.errors import DiffCLError
from diffcl_lite.losses import (align_to_anchor, alignment, alignment_loss, bpr_loss, info_nce, l2_reg, moment_matching,
                                 uniformity)


def test_bpr_hand_case():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(1)))) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_matches_direct_loop():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    tau = 0.3
    total = 0.0
    for i in range(6):
        sims = [F.cosine_similarity(z1[i], z2[j], dim=0) / tau for j in range(6)]
        total += -(sims[i] - torch.logsumexp(torch.stack(sims), 0))
    assert info_nce(z1, z2, tau).item() == pytest.approx((total / 6).item(), rel=1e-5)


def test_info_nce_prefers_aligned_views_and_validates():
    z = torch.randn(32, 8)
    assert info_nce(z, z).item() < info_nce(z, torch.randn(32, 8)).item()
    with pytest.raises(DiffCLError, match="temperature"):
        info_nce(z, z, 0.0)
    with pytest.raises(DiffCLError, match="shape"):
        info_nce(z, z[:3])


def test_alignment_anchor_gets_no_gradient():
    m = torch.randn(8, 4, requires_grad=True)
    a = torch.randn(8, 4, requires_grad=True)
    for kind in ("infonce", "moments"):
        m.grad = a.grad = None
        align_to_anchor(m, a, kind).backward()
        assert m.grad is not None and a.grad is None
    with pytest.raises(DiffCLError, match="infonce"):
        align_to_anchor(m, a, "nope")


def test_moment_matching_direct():
    a = torch.tensor([[0.0, 2.0], [2.0, 4.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # means (1,3) vs (1,1): |.| mean = 1 ; vars (1,1) vs (0,0): mean = 1
    assert moment_matching(a, b).item() == pytest.approx(2.0)
    assert moment_matching(a, a).item() == 0.0


def test_l2_reg_and_alignment_uniformity():
    e = torch.ones(4, 3)
    assert l2_reg(e, batch_size=2).item() == pytest.approx(12 / 4)
    z = torch.randn(50, 3)
    assert alignment(z, z).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.ones(50, 3)
    assert uniformity(collapsed).item() > uniformity(z).item()


def test_mentor_alignment_is_scalar_moments_of_whole_tables_without_stop_gradient():
    from diffcl_lite.losses import mentor_alignment, table_moments_distance

    a = torch.tensor([[0.0, 2.0], [4.0, 6.0]], requires_grad=True)
    b = torch.tensor([[1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    # mean(a) = 3, var(a) = 20/3 (unbiased over all 4 entries); mean(b) = 1, var(b) = 0
    assert torch.isclose(table_moments_distance(a, b), torch.tensor(2.0 + 20.0 / 3.0))
    c = b.detach().clone().requires_grad_(True)
    loss = mentor_alignment({"id": a, "fused": b, "image": c})
    # three pairs: (a, b), (a, c), (b, c) with b == c contributing 0
    assert torch.isclose(loss, 2 * torch.tensor(2.0 + 20.0 / 3.0))
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # no stop-gradient: both tables move
    # per-feature moments differ, scalar moments agree: a column permutation is invisible to MENTOR
    x = torch.randn(50, 4)
    assert float(table_moments_distance(x, x[:, [1, 0, 3, 2]])) < 1e-6
    assert float(moment_matching(x, x[:, [1, 0, 3, 2]])) > 1e-3
    with pytest.raises(DiffCLError, match="two tables"):
        mentor_alignment({"id": a})


@pytest.mark.parametrize("kind", ["infonce", "moments"])
def test_align_to_anchor_is_alignment_loss_with_the_anchor_detached(kind):
    g = torch.Generator().manual_seed(0)
    m = torch.randn(16, 8, generator=g, requires_grad=True)
    a = torch.randn(16, 8, generator=g, requires_grad=True)
    sg = align_to_anchor(m, a, kind=kind)
    both = alignment_loss(m, a, kind=kind)
    assert float(sg.detach()) == pytest.approx(float(both.detach()), rel=1e-6)
    # reference values computed without the dispatch
    ref = info_nce(m, a, 0.2) if kind == "infonce" else moment_matching(m, a)
    assert float(both.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    sg.backward()
    assert a.grad is None and m.grad is not None
    m.grad = None
    both.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0 and m.grad is not None
    with pytest.raises(DiffCLError, match="align kind"):
        alignment_loss(m, a, kind="other")
