"""LabBatch job runner: stage inputs from S3 to scratch, run the tool, stage outputs back.

Container code: it must never import aws_cdk, lambda/ or labbatch/ (see README.md).
"""

__version__ = "0.1.0"
