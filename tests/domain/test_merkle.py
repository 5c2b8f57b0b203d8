"""The audit log's Merkle tree against an independent reading of RFC 9162.

The reference below is written from the RFC's text, not from models.merkle: MTH, PATH and PROOF as the
RFC's recursive definitions over a list of entries, and the inclusion check in the other shape verifiers
use (transparency-dev/merkle's inner/border split), so that a shared mistake would have to be made twice
in two different ways.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import merkle

# ---- the reference, from RFC 9162 §2.1 -------------------------------------------------------------


def ref_mth(entries: list[bytes]) -> bytes:
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:])).digest()


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    n = len(entries)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if complete else [ref_mth(entries)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, entries[:k], complete), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """transparency-dev/merkle's RootFromInclusionProof: the inner part of the path by the index's bits,
    then the border part always from the left."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    assert len(proof) == inner + border, "wrong proof length"
    node = leaf
    for i, sibling in enumerate(proof[:inner]):
        pair = sibling + node if (index >> i) & 1 else node + sibling
        node = hashlib.sha256(b"\x01" + pair).digest()
    for sibling in proof[inner:]:
        node = hashlib.sha256(b"\x01" + sibling + node).digest()
    return node


# ---- the implementation over its stored perfect subtrees --------------------------------------------


def store(entries: list[bytes]) -> tuple[merkle.Frontier, dict[merkle.Coord, bytes]]:
    frontier, nodes = merkle.Frontier(), {}
    for entry in entries:
        nodes.update(frontier.append(merkle.leaf_hash(entry)))
    return frontier, nodes


def entries_of(n: int) -> list[bytes]:
    return [f"event {i}".encode() for i in range(n)]


@given(st.integers(0, 300))
def test_root_is_the_rfcs_mth(n: int) -> None:
    entries = entries_of(n)
    frontier, nodes = store(entries)
    assert frontier.root() == ref_mth(entries)
    assert merkle.subtree_hash(0, n, nodes) == ref_mth(entries)
    assert merkle.Frontier.of(n, nodes).root() == ref_mth(entries)


def test_known_roots() -> None:
    """RFC 6962's test vectors (transparency-dev/merkle testonly): the roots of the first trees."""
    leaves = [
        bytes.fromhex(h)
        for h in (
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        )
    ]
    roots = {
        1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }
    for size, root in roots.items():
        assert merkle.root_of([merkle.leaf_hash(x) for x in leaves[:size]]).hex() == root


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_are_the_rfcs_and_verify_both_ways(case: tuple[int, int]) -> None:
    n, m = case
    entries = entries_of(n)
    _, nodes = store(entries)
    proof = merkle.hashes(merkle.inclusion_ranges(m, n), nodes)
    assert proof == ref_path(m, entries)
    leaf = merkle.leaf_hash(entries[m])
    root = ref_mth(entries)
    merkle.verify_inclusion(m, n, leaf, proof, root)
    assert ref_root_from_inclusion(m, n, leaf, proof) == root


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_are_the_rfcs_and_verify(case: tuple[int, int]) -> None:
    old, new = case
    entries = entries_of(new)
    _, nodes = store(entries)
    proof = merkle.hashes(merkle.consistency_ranges(old, new), nodes)
    assert proof == (ref_subproof(old, entries, True) if old < new else [])
    merkle.verify_consistency(old, new, ref_mth(entries[:old]), ref_mth(entries), proof)


def test_every_change_to_the_log_fails_a_proof() -> None:
    entries = entries_of(13)
    _, nodes = store(entries)
    root = ref_mth(entries)
    proof = merkle.hashes(merkle.inclusion_ranges(5, 13), nodes)
    edited = merkle.leaf_hash(b"event 5 edited")
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(5, 13, edited, proof, root)
    with pytest.raises(merkle.ProofError):  # moved: the same event claimed at another position
        merkle.verify_inclusion(6, 13, merkle.leaf_hash(entries[5]), proof, root)
    with pytest.raises(merkle.ProofError):  # the tree was cut after the proof was made
        merkle.verify_inclusion(5, 12, merkle.leaf_hash(entries[5]), proof, ref_mth(entries[:12]))
    inserted = [*entries[:7], b"slipped in", *entries[7:]]
    old_root = ref_mth(entries[:10])
    with pytest.raises(merkle.ProofError):  # the old head is not a prefix of a log with an insertion
        _, other = store(inserted)
        merkle.verify_consistency(
            10, 14, old_root, ref_mth(inserted), merkle.hashes(merkle.consistency_ranges(10, 14), other)
        )
    reordered = [*entries[:3], entries[4], entries[3], *entries[5:]]
    _, other = store(reordered)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            8,
            13,
            ref_mth(entries[:8]),
            ref_mth(reordered),
            merkle.hashes(merkle.consistency_ranges(8, 13), other),
        )
    with pytest.raises(merkle.ProofError):  # a tree that shrank
        merkle.verify_consistency(13, 12, root, ref_mth(entries[:12]), [])


def test_bad_positions_are_refused() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_ranges(3, 3)
    with pytest.raises(ValueError, match="no consistency proof"):
        merkle.consistency_ranges(4, 3)


# ---- the per-case index's tree: leaves that change ------------------------------------------------


@given(
    st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=40),
    st.lists(st.tuples(st.integers(0, 39), st.binary(min_size=1, max_size=4)), max_size=10),
    st.integers(0, 40),
)
def test_refreshing_changed_and_added_leaves_gives_the_rfc_root(
    first: list[bytes], edits: list[tuple[int, bytes]], grow: int
) -> None:
    entries = list(first)
    stored = merkle.refresh(len(entries), {i: merkle.leaf_hash(e) for i, e in enumerate(entries)}, {})
    assert merkle.fold_root(len(entries), stored) == ref_mth(entries)
    changed: dict[int, bytes] = {}
    for i, value in edits:
        if i < len(entries):
            entries[i] = value
            changed[i] = merkle.leaf_hash(value)
    for n in range(grow):
        entries.append(b"new %d" % n)
        changed[len(entries) - 1] = merkle.leaf_hash(entries[-1])
    stored.update(merkle.refresh(len(entries), changed, stored))
    assert merkle.fold_root(len(entries), stored) == ref_mth(entries)
    for i in range(len(entries)):
        path = merkle.hashes(merkle.inclusion_ranges(i, len(entries)), stored)
        assert path == ref_path(i, entries)


def test_the_case_index_is_a_tree_over_cases_in_order_of_first_appearance() -> None:
    index = merkle.CaseIndex()
    salt_a, salt_b = b"a" * 32, b"b" * 32
    leaves = [merkle.leaf_hash(b"%d" % n) for n in range(3)]
    index.add("A", leaves[0], salt_a)
    index.add("B", leaves[1], salt_b)
    index.add("A", leaves[2], b"ignored: A has its salt")
    chain_a = merkle.chain_next(merkle.chain_next(salt_a, leaves[0]), leaves[2])
    chain_b = merkle.chain_next(salt_b, leaves[1])
    expected = ref_mth([merkle.case_entry("A", 2, chain_a), merkle.case_entry("B", 1, chain_b)])
    assert index.root() == expected
    assert merkle.case_entry("A", 2, chain_a) == ('["case","A",2,"' + chain_a.hex() + '"]').encode()
