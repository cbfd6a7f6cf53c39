"""CloudWatch Logs retention in days, as CDK's enum wants it."""

from aws_cdk import aws_logs as logs

from labbatch.lab.config import LOG_RETENTION_DAYS

# CDK names its members by period, not by day count; same order as CloudWatch's list.
_MEMBERS = ("ONE_DAY", "THREE_DAYS", "FIVE_DAYS", "ONE_WEEK", "TWO_WEEKS", "ONE_MONTH", "TWO_MONTHS",
            "THREE_MONTHS", "FOUR_MONTHS", "FIVE_MONTHS", "SIX_MONTHS", "ONE_YEAR", "THIRTEEN_MONTHS",
            "EIGHTEEN_MONTHS", "TWO_YEARS", "THREE_YEARS", "FIVE_YEARS", "SIX_YEARS", "SEVEN_YEARS",
            "EIGHT_YEARS", "NINE_YEARS", "TEN_YEARS")
_BY_DAYS = dict(zip(LOG_RETENTION_DAYS, _MEMBERS, strict=True))


def retention(days: int) -> logs.RetentionDays:
    return logs.RetentionDays[_BY_DAYS[days]]
