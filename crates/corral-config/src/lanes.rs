//! Traffic per route: each pool route of `[[routes]]` has its own active pool, weights,
//! switch and rollback, a [`Lane`]. Without `[[routes]]` there is one lane, `[routing]`'s,
//! over every pool, as before routes existed. With them, the first lane is the route
//! `[routing]` steers (the one holding `routing.active`), then every other pool route in
//! file order. [`Config::lane_for`] says which lane a `corral switch` acts on.

use crate::model::{Config, RouteTarget};
use crate::traffic::Traffic;

/// One route's traffic: the pools it may send to and where its new requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    /// The route's name; `""` for the one lane of a config without `[[routes]]`.
    pub route: String,
    /// The pools of its blue/green set (every pool without `[[routes]]`).
    pub pools: Vec<String>,
    /// Where the file sends its requests.
    pub traffic: Traffic,
}

impl Config {
    /// Every lane, the one `[routing]` steers first.
    pub fn lanes(&self) -> Vec<Lane> {
        let steered = crate::routes::switched(&self.routes, &self.routing.active);
        let Some(steered) = steered else {
            return vec![Lane {
                route: String::new(),
                pools: self.pools.iter().map(|p| p.name.clone()).collect(),
                traffic: self.routing.traffic(),
            }];
        };
        let mut lanes = Vec::new();
        for route in &self.routes {
            let RouteTarget::Pools { pools, traffic, .. } = &route.target else {
                continue;
            };
            let is_steered = route.name == steered.name;
            let lane = Lane {
                route: route.name.clone(),
                pools: pools.clone(),
                traffic: if is_steered {
                    self.routing.traffic()
                } else {
                    traffic.clone()
                },
            };
            if is_steered {
                lanes.insert(0, lane);
            } else {
                lanes.push(lane);
            }
        }
        lanes
    }

    /// The lane a `corral switch` to `to` acts on: the route named `route`, else the one
    /// whose pools hold `to`'s (a pool serves one route). An error names what is wrong and
    /// the routes there are.
    pub fn lane_for(&self, route: Option<&str>, to: &Traffic) -> Result<Lane, String> {
        let lanes = self.lanes();
        let names = || {
            let names: Vec<&str> = lanes.iter().map(|l| l.route.as_str()).collect();
            names.join(", ")
        };
        let lane = match route {
            Some(name) if self.routes.is_empty() => {
                return Err(format!(
                    "there are no [[routes]]; leave the route {name:?} out"
                ))
            }
            Some(name) => lanes.iter().find(|l| l.route == name).ok_or_else(|| {
                format!(
                    "no pool route is named {name:?}; the pool routes are: {}",
                    names()
                )
            })?,
            None => lanes
                .iter()
                .find(|l| l.pools.contains(&to.active))
                .ok_or_else(|| {
                    format!(
                        "pool {:?} serves no route; the pool routes are: {}",
                        to.active,
                        names()
                    )
                })?,
        };
        let strangers: Vec<&str> = to
            .pools()
            .into_iter()
            .filter(|p| !lane.pools.iter().any(|mine| mine == p))
            .collect();
        if !strangers.is_empty() {
            return Err(format!(
                "{} not of route {:?}, whose pools are: {}; a switch moves one route's traffic among its own pools",
                strangers.join(", "),
                lane.route,
                lane.pools.join(", ")
            ));
        }
        Ok(lane.clone())
    }
}

/// With routes, `[routing]`'s split must stay within the route it steers: a request
/// matched to one route never goes to another route's pool.
pub(crate) fn split_across_routes(
    routes: &[crate::model::Route],
    traffic: &Traffic,
) -> Option<String> {
    let steered = crate::routes::switched(routes, &traffic.active)?;
    let RouteTarget::Pools { pools, .. } = &steered.target else {
        return None;
    };
    let strangers: Vec<&str> = traffic
        .pools()
        .into_iter()
        .filter(|p| !pools.iter().any(|mine| mine == p))
        .collect();
    (!strangers.is_empty()).then(|| {
        format!(
            "{} not of route {:?} ([routing] steers it, through {:?}); give weights only to its pools: {}",
            strangers.join(", "),
            steered.name,
            traffic.active,
            pools.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Traffic;

    fn config(text: &str) -> crate::Config {
        crate::parse(Path::new("t.toml"), text).expect("valid")
    }

    const POOLS: &str = "[pools.web]\ncommand = [\"a\"]\n[pools.api-blue]\ncommand = [\"a\"]\n[pools.api-green]\ncommand = [\"a\"]\n";

    #[test]
    fn without_routes_one_lane_holds_every_pool() {
        let c = config(&format!("[routing]\nactive = \"web\"\n{POOLS}"));
        let lanes = c.lanes();
        assert_eq!(lanes.len(), 1);
        assert_eq!(lanes[0].route, "");
        assert_eq!(lanes[0].pools.len(), 3);
        assert_eq!(lanes[0].traffic, Traffic::to("web"));
        assert!(c.lane_for(Some("api"), &Traffic::to("api-green")).is_err());
        assert_eq!(
            c.lane_for(None, &Traffic::to("api-green")).map(|l| l.route),
            Ok(String::new())
        );
    }

    #[test]
    fn each_pool_route_is_a_lane_and_a_switch_finds_its_route_by_its_pools() {
        let c = config(&format!(
            "[[routes]]\npools = [\"web\"]\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\nweights = {{ api-blue = 90, api-green = 10 }}\n{POOLS}"
        ));
        let lanes = c.lanes();
        let names: Vec<&str> = lanes.iter().map(|l| l.route.as_str()).collect();
        assert_eq!(names, ["/", "api"]);
        assert_eq!(lanes[1].traffic.to_string(), "api-blue=90,api-green=10");
        let green = Traffic::to("api-green");
        assert_eq!(c.lane_for(None, &green).map(|l| l.route), Ok("api".into()));
        assert_eq!(
            c.lane_for(Some("api"), &green).map(|l| l.route),
            Ok("api".into())
        );
        let wrong = c.lane_for(Some("/"), &green).expect_err("not its pool");
        assert!(wrong.contains("not of route \"/\""), "{wrong}");
        let split = Traffic::parse_weights("web=50,api-green=50").expect("weights");
        assert!(c.lane_for(None, &split).is_err());
        assert!(c.lane_for(Some("nope"), &green).is_err());
    }

    #[test]
    fn routing_weights_across_two_routes_are_refused() {
        let text = format!(
            "[routing]\nweights = {{ web = 50, api-green = 50 }}\n[[routes]]\npools = [\"web\"]\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\nactive = \"api-blue\"\n{POOLS}"
        );
        let errors = crate::parse(Path::new("t.toml"), &text).expect_err("refused");
        let text = errors.to_string();
        assert!(text.contains("t.toml:2:"), "{text}");
        assert!(text.contains("routing.weights"), "{text}");
        assert!(text.contains("web not of route \"api\""), "{text}");
    }

    #[test]
    fn the_steered_route_comes_first_with_routing_traffic() {
        let c = config(&format!(
            "[routing]\nactive = \"api-green\"\n[[routes]]\npools = [\"web\"]\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"api-blue\", \"api-green\"]\nactive = \"api-blue\"\n{POOLS}"
        ));
        let lanes = c.lanes();
        assert_eq!(lanes[0].route, "api");
        assert_eq!(lanes[0].traffic, Traffic::to("api-green"));
        assert_eq!(lanes[1].route, "/");
    }
}
