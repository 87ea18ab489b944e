"""The Spark engine's session: a local session that starts the same way on any small machine.

:func:`retrocohort.cohort.extract` (and so ``retrocohort run --engine spark``) calls
:func:`spark_session` when the caller brings no ``SparkSession``. The session it
starts is a ``local[*]`` session set up so that a run does not depend on the
network, on free ports, on the working directory or on other Spark runs on the
same machine, and it is stopped when the extraction is over: the analysis runs
in NumPy and needs neither the JVM's memory nor its threads. A session the
caller started (a notebook, a cluster) is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import SparkUnavailableError

__all__ = ["LOCAL_SPARK_CONF", "QUIET_LOG4J2", "local_spark_session", "quiet_log4j2_file", "spark_session"]


#: Settings of the local session :func:`local_spark_session` starts, each for a reason given beside it.
LOCAL_SPARK_CONF: dict[str, str] = {
    # No web UI: each session would take a port from 4040 up (two runs at once, e.g. parallel test
    # workers, then race for it) and nobody looks at it during a batch run.
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # A local session needs no network. Binding the driver to the loopback address means a host name
    # that does not resolve (containers, CI runners, laptops on a VPN) cannot stop the driver from
    # starting ("Service 'sparkDriver' could not bind on a random free port").
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    # The in-memory catalog, whatever a spark-defaults.conf or PYSPARK_SUBMIT_ARGS says: a Hive
    # catalog would put a Derby metastore (metastore_db/, derby.log) in the working directory, which
    # a second run in the same folder finds locked. The cohort only needs temporary views.
    "spark.sql.catalogImplementation": "in-memory",
    # Durations are computed in UTC (see retrocohort.sources.mimic_iv._connect_spark).
    "spark.sql.session.timeZone": "UTC",
    # The cohort's intermediate tables are small: Spark's default of 200 shuffle partitions would
    # schedule 200 near-empty tasks per join on a laptop's few cores.
    "spark.sql.shuffle.partitions": "2",
    # Adaptive execution writes the whole physical plan into a string for every plan update; a study's
    # plan (many concepts, one index per ICU stay computed in rounds) can be so deep that this string
    # alone exhausts the driver's heap (seen: OutOfMemoryError in QueryExecution.explainString). The
    # string is only shown in Spark's UI, which is off; cap it.
    "spark.sql.maxPlanStringLength": "65536",
}


#: The JVM's log4j2 configuration for a local session: only FATAL lines (Spark writes none in a normal run).
#: A failed task is logged at ERROR with its whole Java stack trace, straight from the JVM to the terminal,
#: before the Python exception that we translate into a one-line error; the exception carries everything.
#: The gateway's logger at the same level keeps Spark from printing "Setting default log level to WARN" (PySpark
#: starts the JVM as an interpreter, whose default level is WARN unless its logger is configured).
QUIET_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
rootLogger.level = fatal
rootLogger.appenderRef.console.ref = console
logger.repl.name = org.apache.spark.api.python.PythonGatewayServer
logger.repl.level = fatal
"""


def quiet_log4j2_file() -> Path:
    """A log4j2 properties file with :data:`QUIET_LOG4J2` (written once in the temporary folder)."""
    digest = hashlib.sha256(QUIET_LOG4J2.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"retrocohort-log4j2-{digest}.properties"
    if not path.is_file() or path.read_text() != QUIET_LOG4J2:
        # written beside and renamed: two runs starting at once never read a half-written file
        partial = path.with_name(f"{path.name}.{id(path)}.part")
        partial.write_text(QUIET_LOG4J2)
        partial.replace(path)
    return path


def _active_context() -> Any:
    """The SparkContext running in this process, or None."""
    from pyspark import SparkContext

    # Private but stable since Spark 1.x; the public getActiveSession() is per JVM thread and
    # would miss a session another thread started.
    return getattr(SparkContext, "_active_spark_context", None)


def local_spark_session(master: str = "local[*]") -> Any:
    """Start (or reuse) a local ``SparkSession`` with :data:`LOCAL_SPARK_CONF`.

    Parameters
    ----------
    master
        Spark master URL; ``local[*]`` uses every core the JVM sees.

    Returns
    -------
    pyspark.sql.SparkSession

    Raises
    ------
    SparkUnavailableError
        pyspark is not installed, or the JVM did not start (no Java, or a Java
        older than Spark needs).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailableError(
            f"the Spark engine needs pyspark, which is not installed ({exc}); install the spark extra "
            "(pip install 'retrocohort[spark]') or use the DuckDB engine (--engine duckdb)"
        ) from None
    builder = SparkSession.builder.master(master).appName("retrocohort")
    for key, value in LOCAL_SPARK_CONF.items():
        builder = builder.config(key, value)
    # The log level must be set before the JVM starts: setLogLevel after getOrCreate comes too late for the
    # start-up lines and is per context. The options reach the driver JVM as spark-submit --conf.
    builder = builder.config(
        "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={quiet_log4j2_file().as_uri()}"
    )
    # py4j logs its connection errors through Python logging (the last-resort handler prints them).
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # pyspark raises PySparkRuntimeError (JAVA_GATEWAY_EXITED) or a Py4J error
        import pyspark

        reason = str(exc).strip().rstrip(".")[:300]
        raise SparkUnavailableError(
            f"could not start a local Spark session (pyspark {pyspark.__version__}): {reason}; "
            "Spark needs Java 17 or 21: install a JDK and put java on PATH or set JAVA_HOME, "
            "or use the DuckDB engine (--engine duckdb)"
        ) from None
    # Spark's WARN and ERROR lines go straight from the JVM to the terminal, through the progress display;
    # errors still reach the user as Python exceptions. (Again here: a JVM already running in this process
    # was started without the options above.)
    session.sparkContext.setLogLevel("FATAL")
    return session


@contextlib.contextmanager
def spark_session(spark: Any = None) -> Iterator[Any]:
    """The session an extraction runs on: the caller's, else a local one stopped on exit.

    Parameters
    ----------
    spark
        A running ``SparkSession`` (left running), or None.

    Yields
    ------
    pyspark.sql.SparkSession
        ``spark`` itself; or, when None, the session already running in this
        process (left running), else a new local session that is stopped
        when the block exits.
    """
    if spark is not None:
        yield spark
        return
    try:
        already_running = _active_context() is not None
    except ImportError:
        already_running = False  # local_spark_session says what to install
    if already_running:
        # Someone in this process (a notebook, a test fixture) has a session: use it as it is
        # (a bare getOrCreate changes none of its settings) and never stop it from under them.
        from pyspark.sql import SparkSession

        yield SparkSession.builder.getOrCreate()
        return
    session = local_spark_session()
    try:
        yield session
    finally:
        # Stopping frees the JVM's memory and threads before the NumPy analysis and leaves no
        # session behind for the next run in this process to pick up with stale settings; the
        # JVM itself stays up, so a later session in the same process starts in seconds.
        with contextlib.suppress(Exception):
            session.stop()
