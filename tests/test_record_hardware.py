"""A record names the CPU model and the features that decide which float kernels run."""
import torch

from benchmarks.records import cpu_description, hardware, package_versions

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile sse4_2

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Another model that must not be read
flags\t\t: fpu
"""


def test_the_first_processor_block_gives_model_and_kernel_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(XEON)
    described = cpu_description(info)
    assert described["cpu_model"] == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    # only kernel-relevant flags, in KERNEL_FLAGS order; "fpu" and "sse4_2" are not among them
    assert described["cpu_flags"] == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]


def test_a_host_without_cpuinfo_records_no_flags(tmp_path):
    described = cpu_description(tmp_path / "absent")
    assert set(described) == {"cpu_model"}
    assert described["cpu_model"] is None  # the record's "cpu" field already holds platform.processor()


def test_hardware_includes_the_description():
    info = hardware(torch.device("cpu"))
    assert {"device", "cpu", "cpu_model", "cpu_count", "torch_threads"} <= set(info)
    assert info["device"] == "cpu"


def test_versions_name_the_torch_build():
    versions = package_versions()
    assert versions["torch_build"].startswith(torch.__version__ + " (")
    assert torch.version.git_version[:12] in versions["torch_build"]
