"""The console line a failed boot step writes and the parser `labbatch why`/`doctor` read it with
(labbatch_contract/boot_reasons.py): found amid a real console's noise, one per step, none when
the boot went well."""

from __future__ import annotations

from labbatch_contract.boot_reasons import BootFailure, console_format, console_line, failures_in

REASON = ("could not install the runner tree from 111122223333.dkr.ecr.us-east-1.amazonaws.com/cdk-hnb659fds-"
          "container-assets-111122223333-us-east-1:abc (3 tries): Error response from daemon: Get "
          "\"https://111122223333.dkr.ecr.us-east-1.amazonaws.com/v2/\": dial tcp 10.0.0.5:443: i/o timeout")
# What a serial console holds around it: kernel lines, systemd's coloured status lines, cloud-init.
NOISE = """\
[    0.000000] Linux version 6.1.119-129.201.amzn2023.x86_64 (mockbuild@ip-10-0-42-28) #1 SMP
[    2.113840] systemd[1]: Detected virtualization amazon.
[  OK  ] Started \x1b[0;1;39mcloud-final.service\x1b[0m - Execute cloud user/final scripts.
ci-info: ++++++++++++++++++++++Net device info+++++++++++++++++++++++
Cloud-init v. 22.2.2 finished at Mon, 07 Dec 2026 04:11:07 +0000. Datasource DataSourceEc2.  Up 31.20 seconds
"""


def test_the_line_written_is_the_line_read_back_amid_console_noise():
    console = NOISE + console_line("runner-tree", REASON) + "\r\n" + \
        "[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mlabbatch-runner-tree.service\x1b[0m.\r\n"
    assert failures_in(console) == [BootFailure("runner-tree", REASON)]


def test_the_instances_printf_format_writes_the_same_line():
    assert console_format().replace("\\n", "\n") % ("scratch", "scratch volume /dev/xvdb (500 GiB) not found") == \
        console_line("scratch", "scratch volume /dev/xvdb (500 GiB) not found") + "\n"


def test_a_line_after_other_text_on_the_same_line_is_found():
    # A kernel timestamp, or systemd's status text not yet ended by a newline.
    console = "[   41.52] " + console_line("scratch", "scratch volume /dev/xvdb (500 GiB) not found") + "\n"
    assert failures_in(console) == [BootFailure("scratch", "scratch volume /dev/xvdb (500 GiB) not found")]


def test_several_failed_steps_are_each_reported_once_with_their_latest_reason():
    console = (NOISE + console_line("scratch", "first boot: not found") + "\n" + NOISE
               + console_line("runner-tree", REASON) + "\n" + NOISE
               + console_line("scratch", "after the reboot: not found") + "\n")
    assert failures_in(console) == [BootFailure("scratch", "after the reboot: not found"),
                                    BootFailure("runner-tree", REASON)]


def test_a_console_without_the_prefix_or_with_other_labbatch_words_shows_no_failure():
    assert failures_in(NOISE) == []
    assert failures_in("") == []
    assert failures_in("labbatch: could not install the runner tree\nlabbatch-boot: started runner-tree\n") == []


def test_a_reason_is_one_line_and_bounded():
    line = console_line("runner-tree", "first\nsecond\tthird  " + "x" * 5000)
    assert "\n" not in line and line.startswith("labbatch-boot: FAILED runner-tree: first second third x")
    assert len(line) < 900
