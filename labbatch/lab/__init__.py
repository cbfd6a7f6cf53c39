"""The lab model: what a lab file says (config, loader), the facts it is checked against (instance
types, GPU types, prices) and what CDK builds from it (the Batch layout, the handler settings).
The CDK app imports this package and labbatch_contract, nothing else of LabBatch."""
