//! JUnit XML for any CI test viewer (quick-junit): one test case per check,
//! failures with their message and a bounded account of what was seen,
//! points as properties (JUnit has no scores).

use std::io::{self, Write};
use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report as JUnitReport, TestCase, TestCaseStatus, TestSuite,
};

use super::markdown::check_details;
use super::{Format, Report, points};
use crate::checks::Status;

pub struct JUnit;

/// How much of a check's account goes into the XML.
const DETAIL_LIMIT: usize = 4096;

impl Format for JUnit {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let report = &report.visible();
        let mut suite = TestSuite::new(report.rubric.title.clone());
        suite.set_time(Duration::from_millis(report.duration_ms));
        suite.add_property(Property::new("score", points(report.score)));
        suite.add_property(Property::new("max_score", points(report.max_score)));
        suite.add_property(Property::new("isolation", report.isolation.level.clone()));
        for c in &report.checks {
            let mut details = check_details(c);
            if details.len() > DETAIL_LIMIT {
                let mut cut = DETAIL_LIMIT;
                while !details.is_char_boundary(cut) {
                    cut -= 1;
                }
                details.truncate(cut);
                details.push_str("\n[...]");
            }
            let status = match c.status {
                Status::Passed => TestCaseStatus::success(),
                Status::Skipped if c.graded => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(c.skipped_because.clone().unwrap_or_default());
                    s
                }
                other => {
                    // Not graded (a grader fault) is an error, never a skip
                    // that a CI viewer would show as fine.
                    let kind = if other == Status::Error || !c.graded {
                        NonSuccessKind::Error
                    } else {
                        NonSuccessKind::Failure
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(c.message.clone());
                    s.set_description(details.clone());
                    s
                }
            };
            let mut case = TestCase::new(c.id.clone(), status);
            case.set_classname(format!(
                "labgrade.{}",
                c.id.split('.').next().unwrap_or("lab")
            ));
            case.set_time(Duration::from_millis(c.duration_ms));
            case.add_property(Property::new("points", points(c.score)));
            case.add_property(Property::new("max_points", points(c.max_score)));
            case.add_property(Property::new("name", c.name.clone()));
            suite.add_test_case(case);
        }
        let mut junit = JUnitReport::new("labgrade");
        junit.add_test_suite(suite);
        junit.serialize(&mut *out).map_err(io::Error::other)?;
        writeln!(out)
    }
}
