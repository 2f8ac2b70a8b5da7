//! Sites in WGS84: circles (great-circle distance) and polygons.
//!
//! A point on the boundary of a site (on a circle, on a polygon's edge or
//! vertex, within 1e-9 degrees, about 0.1 mm) is **inside**.

use std::fmt;
use std::str::FromStr;

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Tolerance for "on the edge", degrees.
const EDGE_EPSILON: f64 = 1e-9;

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Position {
    /// Latitude, -90 … 90.
    pub lat: f64,
    /// Longitude, -180 … 180.
    pub lon: f64,
}

impl Position {
    /// A position, if both coordinates are finite and in range.
    pub fn new(lat: f64, lon: f64) -> Option<Position> {
        (lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon))
        .then_some(Position { lat, lon })
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(&self, other: &Position) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.lat, self.lon)
    }
}

/// Why a `LAT,LON` text is not a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// No comma between the two numbers.
    #[error("'{0}' is not LAT,LON")]
    NotLatLon(String),
    /// The part before the comma is not a number.
    #[error("'{0}' is not a latitude")]
    Latitude(String),
    /// The part after the comma is not a number.
    #[error("'{0}' is not a longitude")]
    Longitude(String),
    /// A coordinate out of range.
    #[error("'{0}': latitude must be -90..90 and longitude -180..180")]
    OutOfRange(String),
}

impl FromStr for Position {
    type Err = PositionError;

    /// `LAT,LON` in decimal degrees.
    fn from_str(s: &str) -> Result<Position, PositionError> {
        let (a, b) = s
            .split_once(',')
            .ok_or_else(|| PositionError::NotLatLon(s.to_string()))?;
        let lat: f64 = a
            .trim()
            .parse()
            .map_err(|_| PositionError::Latitude(a.to_string()))?;
        let lon: f64 = b
            .trim()
            .parse()
            .map_err(|_| PositionError::Longitude(b.to_string()))?;
        Position::new(lat, lon).ok_or_else(|| PositionError::OutOfRange(s.to_string()))
    }
}

/// A named site.
#[derive(Debug, Clone, PartialEq)]
pub enum Site {
    /// Everything within `radius_m` of `center` (great-circle distance).
    Circle {
        /// The centre.
        center: Position,
        /// The radius in metres.
        radius_m: f64,
    },
    /// A simple polygon; latitude and longitude are treated as plane
    /// coordinates, which is exact enough for sites (it must span less than
    /// 180° of longitude and so never crosses the antimeridian).
    Polygon {
        /// The vertices, in order (closed implicitly).
        vertices: Vec<Position>,
    },
}

impl Site {
    /// A polygon site, if it spans less than 180° of longitude and has an area.
    pub fn polygon(vertices: Vec<Position>) -> Option<Site> {
        let min = vertices.iter().map(|p| p.lon).fold(f64::INFINITY, f64::min);
        let max = vertices
            .iter()
            .map(|p| p.lon)
            .fold(f64::NEG_INFINITY, f64::max);
        let n = vertices.len();
        let area2: f64 = (0..n)
            .map(|i| {
                let (a, b) = (vertices[i], vertices[(i + 1) % n]);
                a.lon * b.lat - b.lon * a.lat
            })
            .sum();
        (n >= 3 && max - min < 180.0 && area2.abs() > 0.0).then_some(Site::Polygon { vertices })
    }

    /// Whether `p` is inside the site or on its boundary.
    pub fn contains(&self, p: &Position) -> bool {
        match self {
            Site::Circle { center, radius_m } => center.distance_m(p) <= *radius_m,
            Site::Polygon { vertices } => polygon_contains(vertices, p),
        }
    }
}

fn on_segment(a: &Position, b: &Position, p: &Position) -> bool {
    let cross = (b.lon - a.lon) * (p.lat - a.lat) - (b.lat - a.lat) * (p.lon - a.lon);
    let len = ((b.lon - a.lon).powi(2) + (b.lat - a.lat).powi(2)).sqrt();
    if len == 0.0 {
        return (p.lon - a.lon).abs() <= EDGE_EPSILON && (p.lat - a.lat).abs() <= EDGE_EPSILON;
    }
    cross.abs() / len <= EDGE_EPSILON
        && p.lon >= a.lon.min(b.lon) - EDGE_EPSILON
        && p.lon <= a.lon.max(b.lon) + EDGE_EPSILON
        && p.lat >= a.lat.min(b.lat) - EDGE_EPSILON
        && p.lat <= a.lat.max(b.lat) + EDGE_EPSILON
}

fn polygon_contains(v: &[Position], p: &Position) -> bool {
    let n = v.len();
    if (0..n).any(|i| on_segment(&v[i], &v[(i + 1) % n], p)) {
        return true;
    }
    // Even-odd ray casting towards +longitude.
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (&v[i], &v[(i + 1) % n]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let x = a.lon + (p.lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat);
            if p.lon < x {
                inside = !inside;
            }
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(lat: f64, lon: f64) -> Position {
        Position::new(lat, lon).unwrap()
    }

    fn square() -> Site {
        Site::polygon(vec![
            pos(0.0, 0.0),
            pos(0.0, 1.0),
            pos(1.0, 1.0),
            pos(1.0, 0.0),
        ])
        .unwrap()
    }

    #[test]
    fn polygon_edges_and_vertices_are_inside() {
        let s = square();
        for p in [
            pos(0.0, 0.5), // bottom edge
            pos(0.5, 1.0), // right edge
            pos(1.0, 0.25),
            pos(0.5, 0.0),
            pos(0.0, 0.0), // vertices
            pos(1.0, 1.0),
            pos(0.5, 0.5), // interior
        ] {
            assert!(s.contains(&p), "{p}");
        }
        for p in [
            pos(-0.000001, 0.5),
            pos(0.5, 1.000001),
            pos(2.0, 2.0),
            pos(1.0, 1.5),
        ] {
            assert!(!s.contains(&p), "{p}");
        }
    }

    #[test]
    fn diagonal_edge_and_concave_polygon() {
        // A triangle with a diagonal edge, and an L shape (concave).
        let t = Site::polygon(vec![pos(0.0, 0.0), pos(0.0, 2.0), pos(2.0, 0.0)]).unwrap();
        assert!(t.contains(&pos(1.0, 1.0)));
        assert!(!t.contains(&pos(1.0, 1.01)));
        let l = Site::polygon(vec![
            pos(0.0, 0.0),
            pos(0.0, 2.0),
            pos(1.0, 2.0),
            pos(1.0, 1.0),
            pos(2.0, 1.0),
            pos(2.0, 0.0),
        ])
        .unwrap();
        assert!(l.contains(&pos(1.5, 0.5)));
        assert!(l.contains(&pos(1.5, 1.0)));
        assert!(!l.contains(&pos(1.5, 1.5)));
    }

    #[test]
    fn circle_boundary() {
        let center = pos(48.8566, 2.3522);
        let c = Site::Circle {
            center,
            radius_m: 300.0,
        };
        // 1 degree of latitude is about 111.195 km on the mean sphere.
        let d = 300.0 / (EARTH_RADIUS_M.to_radians());
        assert!(c.contains(&pos(48.8566 + d * 0.999_999, 2.3522)));
        assert!(!c.contains(&pos(48.8566 + d * 1.0001, 2.3522)));
        assert!((center.distance_m(&pos(48.8566 + d, 2.3522)) - 300.0).abs() < 1e-6);
    }

    #[test]
    fn degenerate_polygons_are_refused() {
        assert!(Site::polygon(vec![pos(0.0, 0.0), pos(0.0, 1.0), pos(0.0, 2.0)]).is_none());
        assert!(Site::polygon(vec![pos(0.0, -100.0), pos(1.0, 100.0), pos(2.0, 0.0)]).is_none());
    }

    #[test]
    fn parse_position() {
        assert_eq!("48.85, 2.35".parse::<Position>().unwrap(), pos(48.85, 2.35));
        assert_eq!(
            "91,0".parse::<Position>(),
            Err(PositionError::OutOfRange("91,0".into()))
        );
        assert_eq!(
            "x".parse::<Position>().unwrap_err().to_string(),
            "'x' is not LAT,LON"
        );
    }

    proptest! {
        /// Every point of an edge of a rectangle is inside; points just
        /// beyond it are outside.
        #[test]
        fn rectangle_edges(t in 0.0f64..=1.0, lat0 in -60.0f64..60.0, lon0 in -170.0f64..170.0) {
            let (h, w) = (0.01, 0.02);
            let r = Site::polygon(vec![
                pos(lat0, lon0), pos(lat0, lon0 + w), pos(lat0 + h, lon0 + w), pos(lat0 + h, lon0),
            ]).unwrap();
            prop_assert!(r.contains(&pos(lat0, lon0 + t * w)));
            prop_assert!(r.contains(&pos(lat0 + t * h, lon0 + w)));
            prop_assert!(!r.contains(&pos(lat0 - 1e-6, lon0 + t * w)));
            prop_assert!(!r.contains(&pos(lat0 + t * h, lon0 + w + 1e-6)));
        }
    }
}
