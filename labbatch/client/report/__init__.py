"""`labbatch report`: what ran, what it cost and what it should have asked for.

gather.py reads the figures from the job API; costing.py prices attempts, each on its job's pool,
with `labbatch cost`'s price table; rightsizing.py recommends requests from observed peaks; summary.py turns figures
into the numbers the page shows; render.py writes the one self-contained HTML page.
"""
