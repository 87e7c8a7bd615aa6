"""CSV Email2SMS input: decoding, delimiters, headers, row numbers, per-row problems, limits, and CSV → jobs."""

from __future__ import annotations

import codecs
import csv
import io
import time
import tracemalloc
from email.message import EmailMessage
from typing import Any

import pytest

from mail2sms.config import parse as parse_config
from mail2sms.errors import ContentError, LimitError
from mail2sms.model import Job, JobState, Submission
from mail2sms.parse.csvfile import CsvFile, decode_csv, read_csv, sniff_delimiter
from mail2sms.parse.submission import Envelope, RoutedRecipient, build_submission
from mail2sms.providers.base import Limits as ProviderLimits
from mail2sms.report.compose import results_csv

# --- decoding ----------------------------------------------------------------------------------------------


def test_utf8_with_and_without_bom() -> None:
    """UTF-8 reads the same with Excel's BOM as without it, and the BOM is not part of the first cell."""
    text = "96550000000;Grüße\r\n"
    assert decode_csv(codecs.BOM_UTF8 + text.encode(), None) == text
    assert decode_csv(text.encode(), "us-ascii") == text  # a wrong label loses to valid UTF-8


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_is_read_with_or_without_bom(codec: str) -> None:
    """Excel's "Unicode text" export is UTF-16; the BOM, the declared charset or the NUL pattern gives it away."""
    text = "mobile\tmessage\r\n96550000000\tمرحبا\r\n"
    data = text.encode(codec)
    if codec == "utf-16":
        assert decode_csv(data, None) == text  # with BOM
    else:
        assert decode_csv(data, codec) == text  # declared
        assert decode_csv(data, None) == text  # guessed from where the NULs are


def test_declared_charset_then_windows_1252() -> None:
    """Bytes that are not UTF-8 are read in the declared charset, else as Windows-1252."""
    assert decode_csv("96550000000,مرحبا".encode("cp1256"), "windows-1256") == "96550000000,مرحبا"
    assert decode_csv("447777123456,Café €5".encode("cp1252"), None) == "447777123456,Café €5"
    assert decode_csv("447777123456,Café".encode("cp1252"), "x-unknown-charset") == "447777123456,Café"


# --- shapes people send ------------------------------------------------------------------------------------


def rows_of(text: str, region: str | None = "KW", **kw: Any) -> list[tuple[int, str | None, str | None, str | None]]:
    _, rows = read_csv(text, region=region, **kw)
    return [(r.row, r.number, r.text, r.error) for r in rows]


def test_excel_semicolon_export_with_bom_and_no_header() -> None:
    """Excel in a decimal-comma locale: semicolons, CRLF, a BOM, commas inside messages, no header."""
    data = codecs.BOM_UTF8 + b"96550000000;Hello, world\r\n+965 5000 0001;Meeting at 5, room 2\r\n"
    layout, rows = read_csv(decode_csv(data, None), region="KW")
    assert layout.delimiter == ";"
    assert layout.header is None
    assert [(r.row, r.number, r.text) for r in rows] == [
        (1, "96550000000", "Hello, world"),
        (2, "96550000001", "Meeting at 5, room 2"),
    ]


def test_comma_rows_with_semicolons_in_messages() -> None:
    """A comma file whose messages contain semicolons is still read as comma-separated."""
    layout, rows = read_csv("96550000000,Hi; see you\n96550000001,Bye; later\n", region="KW")
    assert layout.delimiter == ","
    assert [r.text for r in rows] == ["Hi; see you", "Bye; later"]


def test_tab_separated() -> None:
    """Tab-separated rows (spreadsheet copy-paste, Excel's Unicode text) are read by columns."""
    assert sniff_delimiter("96550000000\tHello, there; you\n96550000001\tOK\n") == "\t"


def test_header_with_aliases_in_another_order() -> None:
    """Named columns in any order, with any documented alias, and extra columns that are ignored."""
    text = "Text,Name,MSISDN,Sender,Send Time\nYour order is ready,Ali,96550000000,MyShop,2099-01-01 10:00\n"
    layout, rows = read_csv(text, region="KW")
    assert layout.header == ["Text", "Name", "MSISDN", "Sender", "Send Time"]
    (row,) = rows
    assert (row.row, row.number, row.text, row.sender, row.sendtime) == (
        2, "96550000000", "Your order is ready", "MyShop", "2099-01-01T10:00:00+00:00"
    )
    assert row.cells == ["Your order is ready", "Ali", "96550000000", "MyShop", "2099-01-01 10:00"]


def test_unknown_header_of_positional_width_is_skipped() -> None:
    """A header that names no known column but is only mobile, message wide is skipped and columns are positional."""
    assert rows_of("Phone,Words\n96550000000,hi\n") == [(2, "96550000000", "hi", None)]


def test_header_without_message_column_is_refused() -> None:
    """A header that names the mobile column but no message column is a whole-file problem, naming the aliases."""
    with pytest.raises(ContentError, match=r"row 1: the header has no message column \(name it message, sms, text\)"):
        read_csv("mobile,name\n96550000000,Ali\n", region="KW")


def test_quoted_commas_newlines_and_quotes_keep_physical_row_numbers() -> None:
    """RFC 4180 quoting: a multi-line message makes the next row start on a later line, and that is its number."""
    text = ('mobile,message\r\n96550000000,"Line one,\r\nline two\r\nsaid ""hi"""\r\n'
            '96550000001,after\r\n\r\n96550000002,"x"\r\n')
    assert rows_of(text) == [
        (2, "96550000000", 'Line one,\nline two\nsaid "hi"', None),
        (5, "96550000001", "after", None),
        (7, "96550000002", "x", None),
    ]


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_line_endings_and_blank_rows(newline: str) -> None:
    """CRLF, LF and old-Mac CR all end rows; blank lines and Excel's all-delimiter rows are skipped but counted."""
    text = newline.join(["96550000000;a", "", ";;;", "96550000001;b", ""])
    assert rows_of(text) == [(1, "96550000000", "a", None), (4, "96550000001", "b", None)]


def test_bad_numbers_and_empty_messages_carry_their_row() -> None:
    """Each bad row says what is wrong with it; the good rows around it are read normally."""
    text = "mobile,message\n96550000000,ok\n12ab,hello\n96550000001,   \n,no number\n96550000002,fine\n"
    rows = rows_of(text)
    assert [(r, n) for r, n, _, _ in rows] == [(2, "96550000000"), (3, None), (4, "96550000001"), (5, None),
                                             (6, "96550000002")]
    errors = {r: e for r, _, _, e in rows}
    assert errors[2] is None
    assert errors[6] is None
    assert (errors[3] or "").startswith("'12ab' is not a phone number")
    assert errors[4] == "the message is empty"
    assert errors[5] == "the mobile number is empty"


def test_too_many_columns_suggests_quoting() -> None:
    """An unquoted message with the delimiter in it gives too many cells; the error says to quote it."""
    (row,) = rows_of("96550000000,Hello, dear, customer, see you\n")
    assert row[3] is not None
    assert "5 columns but at most 4 are read" in row[3]
    assert "(comma) in double quotes" in row[3]


def test_sender_and_sendtime_columns_without_header() -> None:
    """The third and fourth positional columns are from_id and sendtime (ISO UTC out; a bad one is the row's error)."""
    _, rows = read_csv("96550000000,a,ACME,2099-05-01T12:00+03:00\n96550000001,b,,tomorrow\n", region="KW")
    assert (rows[0].sender, rows[0].sendtime, rows[0].error) == ("ACME", "2099-05-01T09:00:00+00:00", None)
    assert rows[1].sender is None
    assert rows[1].error is not None
    assert "'tomorrow' is not a date and time" in rows[1].error


def test_unclosed_quote_names_the_row() -> None:
    """A double quote that is never closed would swallow the rest of the file: refused, naming where it opened."""
    with pytest.raises(ContentError, match="row 2: a double quote opened in this row is never closed"):
        read_csv('96550000000,a\n96550000001,"oops\n96550000002,c\n', region="KW")


def test_text_after_closing_quote_names_the_row() -> None:
    """`"abc"def` is malformed quoting; the error says how to write a quote inside a message."""
    with pytest.raises(ContentError, match=r'row 1: a closing double quote is followed by more text'):
        read_csv('96550000000,"abc"def\n', region="KW")


def test_more_rows_than_allowed_is_a_limit_error() -> None:
    """Rows beyond max_rows (counted over the mail's files) raise LimitError as soon as they are reached."""
    text = "".join(f"9655000{i:04d},m\n" for i in range(11))
    assert len(read_csv(text, region="KW", max_rows=11)[1]) == 11
    with pytest.raises(LimitError, match="more than 10 CSV rows"):
        read_csv(text, region="KW", max_rows=10)
    with pytest.raises(LimitError):
        list(CsvFile(text, region="KW", max_rows=15, rows_before=5).rows())


def test_empty_file_is_refused() -> None:
    """A CSV with nothing in it is a whole-file problem."""
    with pytest.raises(ContentError, match="the CSV has no rows"):
        read_csv("\r\n;;\r\n", region="KW")


@pytest.mark.slow
def test_rows_stream_within_bounded_memory() -> None:
    """Reading 20,000 rows one at a time allocates a small multiple of one row, not of the file."""
    text = "".join(f"9655{i:07d},Message number {i % 7}\n" for i in range(20_000))
    reader = CsvFile(text, region="KW")
    tracemalloc.start()
    try:
        count = sum(1 for _ in reader.rows())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < len(text) // 2  # a list of 20,000 rows alone would be several times the text


# --- CSV → jobs (parse.submission) -------------------------------------------------------------------------

CONFIG = """
[providers.kwt]
type = "kwtsms"
username = "u"
password = "p"
sender = "KWT-MESSAGE"

[[routes]]
match = "csv@sms.test"
format = "csv"
provider = "kwt"
region = "KW"
{extra}
"""


def build(body: str | None = None, files: list[tuple[str, bytes, str]] | None = None, extra: str = "",
          limits: ProviderLimits | None = None) -> Submission:
    config = parse_config(CONFIG.format(extra=extra))
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "csv@sms.test"
    msg["Subject"] = "bulk"
    msg.set_content(body or "")
    for name, data, ctype in files or []:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    envelope = Envelope("alice@example.org", [RoutedRecipient("csv@sms.test", config.routes[0])], trusted=True)
    submission, keys = build_submission(msg.as_bytes(), envelope, config.providers, time.time(),
                                        provider_limits={"kwt": limits} if limits else None)
    assert len(keys) == len(submission.jobs)
    return submission


def states(submission: Submission) -> list[tuple[int | None, str, JobState]]:
    return [(j.row, j.number, j.state) for j in submission.jobs]


def test_partial_policy_queues_good_rows_and_refuses_bad_ones() -> None:
    """Bad rows become jobs already rejected (number "" when unreadable), good rows are queued."""
    sub = build(files=[("list.csv", b"96550000000;ok\r\n12ab;x\r\n96550000001;\r\n", "application/vnd.ms-excel")])
    assert states(sub) == [(1, "96550000000", JobState.QUEUED), (2, "", JobState.REJECTED),
                           (3, "96550000001", JobState.REJECTED)]
    assert sub.jobs[2].error == "the message is empty"
    assert sub.extra["csv"]["files"][0]["rows"] == [[1, "96550000000", "ok"], [2, "12ab", "x"], [3, "96550000001"]]


def test_all_or_nothing_names_the_first_bad_rows() -> None:
    """With csv_policy = all-or-nothing one bad row refuses the mail, naming rows and problems in short."""
    data = b"mobile,message\n96550000000,a\n12ab,b\n96550000001,c\n96550000002,\n"
    with pytest.raises(ContentError) as caught:
        build(files=[("x.csv", data, "text/csv")], extra='csv_policy = "all-or-nothing"')
    assert str(caught.value) == ("2 of 4 CSV rows have a problem and the route sends all rows or none: "
                                 "row 3: '12ab' is not a phone number; row 5: the message is empty")


def test_all_or_nothing_shortens_each_problem_to_its_first_clause() -> None:
    """The 554 text keeps a problem's first clause whole, colons of a time or separators in a value included."""
    with pytest.raises(ContentError) as caught:
        build("96550000000,a,,2001-01-01 10:00\n96550000001,b,Shop;One\n96550000002,c\n",
              extra='csv_policy = "all-or-nothing"', limits=ProviderLimits(max_recipients=200))
    assert str(caught.value).endswith(
        "row 1: sendtime: 2001-01-01 10:00 UTC is in the past; "
        "row 2: the sender 'Shop;One' may only use letters A-Z, digits, spaces and - . _ &"
    )


def test_no_good_row_refuses_the_mail_even_when_partial() -> None:
    """When not one row could be sent, the mail is refused at once instead of reporting every row as failed."""
    with pytest.raises(ContentError, match="no CSV row can be sent"):
        build("12ab,hello\n96550000000,\n")


def test_body_csv_when_there_is_no_attachment() -> None:
    """Without a CSV attachment the text body is the CSV; a signature below `-- ` is not a row."""
    sub = build("96550000000,hello\n96550000001,world\n-- \nAlice\n")
    assert [(j.row, j.text) for j in sub.jobs] == [(1, "hello"), (2, "world")]


def test_several_attachments_number_rows_per_file_and_name_the_file() -> None:
    """Two CSV files: all rows, row numbers counted in each file, and a bad row's error names its file."""
    sub = build("see attached", files=[
        ("a.csv", b"96550000000,one\n", "text/csv"),
        ("b.CSV", b"mobile,message\n96550000001,two\nxx,three\n", "application/octet-stream"),
        ("logo.png", b"\x89PNG", "image/png"),
    ])
    assert [(j.row, j.text) for j in sub.jobs] == [(1, "one"), (2, "two"), (3, "three")]
    assert sub.jobs[2].error is not None
    assert sub.jobs[2].error.startswith("b.CSV: 'xx' is not a phone number")
    assert [f["name"] for f in sub.extra["csv"]["files"]] == ["a.csv", "b.CSV"]


def test_row_sender_is_checked_like_any_sender() -> None:
    """A row's from_id becomes the job's sender and is checked against the provider's rules, row by row."""
    sub = build("96550000000,a,MyShop\n96550000001,b,ThisSenderIsTooLong\n", limits=ProviderLimits(max_recipients=200))
    assert sub.jobs[0].sender == "MyShop"
    assert sub.jobs[0].state is JobState.QUEUED
    assert sub.jobs[1].state is JobState.REJECTED
    assert "ThisSenderIsTooLong" in (sub.jobs[1].error or "")


def test_future_sendtime_schedules_the_row() -> None:
    """A future sendtime holds the job `scheduled` until then (the provider cannot schedule); a past one is refused."""
    later = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() + 3 * 86400))
    sub = build(f"96550000000,a,,{later}\n96550000001,b,,2001-01-01 10:00\n96550000002,c\n")
    scheduled, past, now = sub.jobs
    assert scheduled.state is JobState.SCHEDULED
    assert scheduled.next_attempt_at == pytest.approx(time.time() + 3 * 86400, abs=120)
    assert scheduled.expires_at > scheduled.next_attempt_at
    assert past.state is JobState.REJECTED
    assert "in the past" in (past.error or "")
    assert now.state is JobState.QUEUED
    assert now.options.sendtime is None


def test_identical_texts_share_one_string() -> None:
    """Rows with the same message share one text object, so 100,000 jobs do not hold 100,000 copies."""
    sub = build("".join(f"9655000{i:04d},Same text\n" for i in range(50)))
    assert len({id(j.text) for j in sub.jobs}) == 1


def test_dry_run_keeps_bad_rows_refused() -> None:
    """On a dry-run route good rows are "would be sent" and bad rows stay refused with their problem."""
    sub = build("96550000000,a\n12ab,b\n", extra="dry_run = true")
    assert [j.state for j in sub.jobs] == [JobState.CANCELLED, JobState.REJECTED]


# --- results.csv (report.compose) --------------------------------------------------------------------------


def read_results(data: bytes, delimiter: str) -> list[list[str]]:
    assert data.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))


def test_results_csv_repeats_every_row_with_its_outcome() -> None:
    """results.csv: the input's header and delimiter, every row's cells, then row, status, number, id, parts, error."""
    data = b"Mobile;Message;Name\r\n96550000000;a;Ali\r\n12ab;b;Bo\r\n"
    sub = build(files=[("in.csv", data, "text/csv")])
    sub.jobs[0].state, sub.jobs[0].provider_id = JobState.SENT, "m-1"
    ((name, out),) = results_csv(sub, sub.jobs)
    assert name == "results.csv"
    rows = read_results(out, ";")
    assert rows[0] == ["Mobile", "Message", "Name", "row", "status", "number", "provider_id", "parts", "error"]
    assert rows[1] == ["96550000000", "a", "Ali", "2", "sent", "+96550000000", "m-1", "1", ""]
    assert rows[2][:7] == ["12ab", "b", "Bo", "3", "rejected", "", ""]
    assert rows[2][8].startswith("'12ab' is not a phone number")


def test_results_csv_pads_rows_and_names_positional_columns() -> None:
    """Without a header the columns are named mobile, message, from_id, sendtime; short rows are padded."""
    sub = build("96550000000,a,ACME\n96550000001,b\n")
    ((_, out),) = results_csv(sub, sub.jobs)
    rows = read_results(out, ",")
    assert rows[0][:5] == ["mobile", "message", "from_id", "sendtime", "row"]
    assert len({len(r) for r in rows}) == 1


def test_results_csv_marks_rows_the_spool_left_out_as_duplicates() -> None:
    """When the spool kept only some jobs (the rest were in an earlier copy), the others say "duplicate"."""
    sub = build("96550000000,a\n96550000001,b\n96550000002,c\n")
    kept: list[Job] = [sub.jobs[0], sub.jobs[2]]
    ((_, out),) = results_csv(sub, kept)
    assert [r[5] for r in read_results(out, ",")[1:]] == ["queued", "duplicate", "queued"]


def test_results_csv_one_file_per_input_file() -> None:
    """Two input files give two results files named after them, each with its own rows."""
    sub = build("x", files=[("jan.csv", b"96550000000,a\n", "text/csv"), ("feb.csv", b"96550000001;b\n", "text/csv")])
    out = dict(results_csv(sub, sub.jobs))
    assert sorted(out) == ["results-feb.csv", "results-jan.csv"]
    assert read_results(out["results-feb.csv"], ";")[1][:2] == ["96550000001", "b"]


def test_no_results_csv_for_other_formats() -> None:
    """A submission that did not come from CSV gets no results.csv."""
    sub = Submission(envelope_from="a@b.c", recipients=["x@y.z"], jobs=[Job("96550000000", "t", "kwt")], route="r")
    assert results_csv(sub, sub.jobs) == []
