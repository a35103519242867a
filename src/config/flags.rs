//! clap flags generated from [`KEYS`]: a command flattens [`KeyFlags`] and
//! gets one flag per key in its scope, with the key's doc line, default and
//! env var as help. A flag therefore always has a key (no list to keep in
//! step), and its value reaches [`load`](fn@super::load) as a [`Layer`].

use super::keys::{Flag, Form, KEYS, Key};
use super::load::Layer;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// The config flags given to one command. `WORK`: the command takes every
/// key's flag (`work`, `config check`), else only [`Scope::All`](super::keys::Scope::All) ones.
#[derive(Debug, Clone, Default)]
pub struct KeyFlags<const WORK: bool> {
    layers: Vec<Layer>,
}

impl<const WORK: bool> KeyFlags<WORK> {
    /// The flags given, as overrides for [`load`](fn@super::load).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    fn keys() -> impl Iterator<Item = &'static Key> {
        KEYS.iter().filter(|k| k.in_scope(WORK))
    }
}

/// The clap argument of `key`; its id is the dotted path.
fn arg(key: &'static Key) -> Arg {
    let help = format!(
        "{} [default: {}; env {}]",
        key.doc,
        key.default_text(),
        key.env()
    );
    let arg = Arg::new(key.path)
        .value_name(key.value_name)
        .help(help)
        .value_parser(clap::value_parser!(String));
    match key.flag {
        Flag::Long(name) if key.form == Form::Texts => arg.long(name).action(ArgAction::Append),
        Flag::Long(name) => arg.long(name).action(ArgAction::Set),
        Flag::Trailing => arg.last(true).num_args(1..).action(ArgAction::Append),
    }
}

impl<const WORK: bool> Args for KeyFlags<WORK> {
    fn augment_args(cmd: Command) -> Command {
        Self::keys().fold(cmd, |cmd, key| cmd.arg(arg(key)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<const WORK: bool> FromArgMatches for KeyFlags<WORK> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = KeyFlags::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for key in Self::keys() {
            let layer = match key.flag {
                Flag::Long(_) if key.form == Form::Texts => matches
                    .get_many::<String>(key.path)
                    .map(|texts| Layer::flag(key, &texts.cloned().collect::<Vec<_>>().join(","))),
                Flag::Long(_) => matches
                    .get_one::<String>(key.path)
                    .map(|raw| Layer::flag(key, raw)),
                Flag::Trailing => matches
                    .get_many::<String>(key.path)
                    .map(|words| Layer::argv(key, words.cloned().collect())),
            };
            self.layers.extend(layer);
        }
        Ok(())
    }
}
