//! `ward sites ...`: hospitals and their wards.

use clap::Subcommand;
use ward_proto::{CreateSiteRequest, SiteView, UpdateSiteRequest};

use crate::connect::connect;
use crate::error::Result;
use crate::global::GlobalArgs;
use crate::output::{Output, done, print_json};
use crate::text::or_dash;

/// `ward sites ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SitesCommand {
    /// List hospitals and wards
    List,
    /// Show one site
    Show {
        /// `hospital` or `hospital/ward`
        slug: String,
    },
    /// Create a hospital (`slug`) or a ward (`hospital/ward`)
    Create {
        /// `hospital` or `hospital/ward`: a-z, 0-9 and -
        slug: String,
        /// Display name
        #[arg(long, value_name = "TEXT")]
        name: String,
    },
    /// Change a site's display name
    Rename {
        /// `hospital` or `hospital/ward`
        slug: String,
        /// New display name
        #[arg(long, value_name = "TEXT")]
        name: String,
    },
    /// Delete a site
    Delete {
        /// `hospital` or `hospital/ward`
        slug: String,
    },
}

fn show_site(out: &Output, site: &SiteView) -> Result {
    if out.json {
        return print_json(out, site);
    }
    out.fields(&[
        ("slug", site.slug.clone()),
        ("name", site.name.clone()),
        ("kind", site.kind.clone()),
        ("parent", or_dash(site.parent.as_deref())),
        ("created", site.created_at.clone()),
    ]);
    Ok(())
}

pub(crate) async fn sites(global: &GlobalArgs, command: SitesCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        SitesCommand::List => {
            let sites = client.list_sites().await?;
            if out.json {
                return print_json(out, &sites);
            }
            out.table(
                &["slug", "name", "kind", "parent", "created"],
                sites.iter().map(|site| {
                    vec![
                        site.slug.clone(),
                        site.name.clone(),
                        site.kind.clone(),
                        or_dash(site.parent.as_deref()),
                        site.created_at.clone(),
                    ]
                }),
            );
            Ok(())
        }
        SitesCommand::Show { slug } => show_site(out, &client.get_site(&slug).await?),
        SitesCommand::Create { slug, name } => {
            show_site(out, &client.create_site(&CreateSiteRequest { slug, name }).await?)
        }
        SitesCommand::Rename { slug, name } => show_site(
            out,
            &client.update_site(&slug, &UpdateSiteRequest { name }).await?,
        ),
        SitesCommand::Delete { slug } => {
            client.delete_site(&slug).await?;
            done(out, &format!("site {slug} deleted"))
        }
    }
}
