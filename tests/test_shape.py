"""The default ID shape rule: room for every catalogue size, the documented examples, monotone in N."""

import pytest

from rqgmm.ids.shape import ROOM, default_shape


@pytest.mark.parametrize("n,shape", [(1682, (3, 128)), (9066, (3, 256)), (10**6, (3, 256)), (10**8, (4, 256)),
                                     (60, (3, 16)), (1, (2, 8))])
def test_the_documented_examples(n, shape):
    assert default_shape(n) == shape


def test_every_size_gets_room_and_the_shallowest_such_stack():
    for n in [1, 2, 7, 100, 4095, 4096, 10**5, 3 * 10**6, 10**9]:
        levels, k = default_shape(n)
        assert k**levels >= ROOM * n and (levels == 2 or k ** (levels - 1) < ROOM * n)


def test_larger_catalogues_never_get_a_smaller_id_space():
    spaces = [k**levels for levels, k in map(default_shape, range(1, 20000, 37))]
    assert spaces == sorted(spaces)


def test_an_empty_catalogue_is_refused():
    with pytest.raises(ValueError, match="at least one item"):
        default_shape(0)


def test_a_half_given_shape_is_described_as_used_not_as_the_default():
    """With only --codebook-size (or only --levels) given, the line names the shape the fits use."""
    from rqgmm.ids.shape import describe

    assert describe(1_000_000, None, 16) == ("shape 3 x 16 for 1,000,000 items: the codebook size as given, the "
                                             "levels from the default shape 3 x 256")
    assert describe(1_000_000, 2, None).startswith("shape 2 x 256 for 1,000,000 items: the levels as given")
    assert describe(1_000_000).startswith("default shape 3 x 256 for 1,000,000 items")
