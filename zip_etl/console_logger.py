"""What a failed run prints on the terminal (`dagster asset materialize`, a run worker's stderr).

zip_etl's errors are `dg.Failure`s whose description already says what is wrong and which setting
to fix, in one line. Dagster's console logger prints such a failure with the whole stack trace of
the `raise`, twice (the step's failure, then the run's), so the one line a person needs sits inside
~60 lines. Here, for a `Failure` only, the console shows the description in place of the stack
trace. Nothing is lost: every event, with its stack trace, is stored in Dagster's event log and
shown in the UI; errors that are not a `Failure` (bugs) keep their stack trace on the terminal too.

How: Dagster builds its default console logger from `logging.getLoggerClass()` whenever a run has
no logger configured, which is how `dagster asset materialize` and `dagster dev`'s run workers run.
Loading zip_etl's definitions sets that class to a subclass of whatever it was, differing only in
how it handles records of a failure event whose error is a `Failure`; Dagster attaches its
structured metadata (`dagster_meta`) to every record it logs. No other record, logger or library
behaves differently; if Dagster stops attaching that metadata, output is Dagster's unchanged.
"""

from __future__ import annotations

import copy
import logging

from zip_etl.dagster_internals import failure_description


def concise(record: logging.LogRecord) -> logging.LogRecord:
    """The record with a Failure's stack trace replaced by its description (others unchanged)."""
    description = failure_description(record)
    message = str(record.msg)
    if description is None or "\n\n" not in message:
        return record
    record = copy.copy(record)  # the caller's record is left as it was
    record.msg = f"{message.split(chr(10) * 2, 1)[0]}\n    {description}"
    record.args = ()
    return record


_Base = logging.getLoggerClass()


class ConciseFailureLogger(_Base):  # type: ignore[misc, valid-type]
    def handle(self, record: logging.LogRecord) -> None:
        super().handle(concise(record))


def install() -> None:
    if not issubclass(logging.getLoggerClass(), ConciseFailureLogger):
        logging.setLoggerClass(ConciseFailureLogger)


install()
