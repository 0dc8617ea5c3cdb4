"""The fault suite (issue 14): real `referral-service serve` processes on PostgreSQL, hurt on
purpose, and then counted: nothing acknowledged may be lost or stored twice.

`make faults` (`python -m tests.faults`) runs the long form of every scenario and prints one
line of figures per scenario; `make test` runs a short form of the first two
(tests/faults/test_faults_short.py). The scenarios are functions of a migrated database URL and
a work directory, parameterised by rounds and durations, so both call the same code:

- kill9.py: `kill -9` of the whole server under concurrent intake, clients retrying with the
  same Idempotency-Key until they get an answer;
- outage.py: PostgreSQL unreachable for a few seconds, through a TCP proxy the run controls;
- redis_down.py: the rate-limit store unreachable, through a TCP proxy, under load.
"""
