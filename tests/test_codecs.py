"""The decoder self-test: 'available' is not 'decodes'."""

from __future__ import annotations

import json
import logging

import numpy as np
import pydicom.uid as uids
import pytest
from pydicom import dcmread

from scp_node import codecs
from scp_node.cli import main


def test_12_bit_jpeg_extended_is_proven_only_for_plugins_that_decode_it():
    cap = codecs.capabilities().syntaxes[uids.JPEGExtended12Bit]
    if "gdcm" in cap.installed:
        # gdcm registers as available for .51 but refuses 12-bit precision
        assert "gdcm" not in cap.proven
        assert "12-bit" in next(r.detail for r in cap.results if r.plugin == "gdcm")
    if "pylibjpeg" in cap.installed:
        assert cap.preferred == "pylibjpeg"


def test_gdcm_is_preferred_where_it_is_proven():
    caps = codecs.capabilities()
    for cap in caps.syntaxes.values():
        if "gdcm" in cap.proven:
            assert cap.preferred == "gdcm", cap.uid.name


def test_only_proven_syntaxes_are_accepted():
    caps = codecs.capabilities()
    accepted = caps.accepted_transfer_syntaxes()
    for uid, cap in caps.syntaxes.items():
        assert (uid in accepted) == cap.decodable
    assert uids.ExplicitVRLittleEndian in accepted
    assert uids.ImplicitVRLittleEndian in accepted


def test_a_plugin_that_decodes_wrongly_is_not_proven(monkeypatch):
    # A lossless sample whose expected pixels differ by one count: no plugin may pass it.
    real = codecs.reference_image

    def off_by_one(bits: int, size: int = 32) -> np.ndarray:
        image = real(bits).copy()
        image[0, 0] += 1
        return image

    monkeypatch.setattr(codecs, "reference_image", off_by_one)
    cap = codecs._test_syntax(uids.JPEG2000Lossless)
    assert cap.installed and not cap.proven
    assert all("lossless decode differs" in r.detail for r in cap.results)


def test_decode_logs_the_plugin(caplog):
    path = codecs._sample_path("j2k_lossless_16.dcm")
    ds = dcmread(path)
    with caplog.at_level(logging.INFO, logger="scp_node.codecs"):
        pixels = codecs.decode_pixels(ds)
    assert np.array_equal(pixels, codecs.reference_image(16))
    preferred = codecs.capabilities().syntaxes[uids.JPEG2000Lossless].preferred
    assert f"plugin={preferred}" in caplog.text


def test_decoders_command_json(capsys):
    assert main(["decoders", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    by_uid = {row["uid"]: row for row in table}
    assert by_uid[str(uids.JPEG2000Lossless)]["decodable"] is True
    assert set(by_uid) == {str(u) for u in codecs.COMPRESSED}


def test_decoders_command_table(capsys):
    assert main(["decoders"]) == 0
    out = capsys.readouterr().out
    assert "JPEG Extended" in out and "verified" in out
    assert "compressed syntaxes accepted" in out


@pytest.mark.parametrize("uid", [uids.ExplicitVRLittleEndian])
def test_uncompressed_needs_no_plugin(uid):
    from tests.dicom_factory import mr_dataset

    ds = mr_dataset()
    assert codecs.decode_pixels(ds).shape == (64, 64)
