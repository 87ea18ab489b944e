"""retrocohort.report"""
